"""Where the llama-server that .ci/build-llama-server built is: for the
integration tests and for bench/run.py."""
import glob
import os


def llama_server_binary():
    """$LLAMA_SERVER, else the newest build in the cache, else None."""
    path = os.environ.get("LLAMA_SERVER")
    if path and os.access(path, os.X_OK):
        return path
    cache = os.environ.get("BOR_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "bor-openai-compat")
    found = sorted(glob.glob(os.path.join(cache, "llama-server-*", "bin", "llama-server")))
    return found[-1] if found else None
