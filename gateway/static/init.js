// Starts Swagger UI on the gateway's /docs page (gateway/openapi.py).
//
// Kept out of the page so that /docs needs no inline script: its Content-Security-Policy
// runs scripts from the gateway's own origin only. The page gives the settings as a JSON
// data block (id "swagger-ui-config"), which a browser never runs as script.
"use strict";

(function () {
  var config = JSON.parse(document.getElementById("swagger-ui-config").textContent);
  var redirectPath = config.oauth2RedirectPath;
  delete config.oauth2RedirectPath;
  config.oauth2RedirectUrl = window.location.origin + redirectPath;
  config.presets = [SwaggerUIBundle.presets.apis];
  window.ui = SwaggerUIBundle(config);
})();
