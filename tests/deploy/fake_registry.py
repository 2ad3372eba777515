"""Stand-in for `python -m services.registry` in the runner test."""

from tests.deploy.tiny_app import serve

if __name__ == "__main__":
    serve("KOMAR_REGISTRY_PORT")
