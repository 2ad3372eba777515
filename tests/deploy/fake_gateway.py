"""Stand-in for `python -m gateway` in the runner test."""

from tests.deploy.tiny_app import serve

if __name__ == "__main__":
    serve("KOMAR_GATEWAY_PORT")
