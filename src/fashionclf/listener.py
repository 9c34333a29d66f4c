"""The web service's listening socket. It is bound before the model is loaded, and this module imports nothing
heavy, so a bad --port or a port in use is one line at once rather than after seconds of loading or from uvicorn;
the socket is then handed to uvicorn, so nothing can take the port in between."""

from __future__ import annotations

import errno
import socket

from fashionclf.errors import FashionClfError


def listen(host: str, port: int) -> socket.socket:
    """A socket listening on host:port (port 0: a free one); any reason it cannot be is a FashionClfError."""
    if not 0 <= port <= 65535:
        raise FashionClfError(f"--port: {port} is not a port number (0 to 65535; 0 picks a free port)")
    # As uvicorn binds one socket itself: IPv6 for an address with a colon, and SO_REUSEADDR so that a restart
    # need not wait for the last run's connections to time out.
    listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
        # Listening at once: no other process can bind the port beside this socket while the model loads.
        listener.listen()
    except OSError as exc:
        listener.close()
        if exc.errno == errno.EADDRINUSE:
            message = f"{_address(host, port)} is already in use; stop what listens there or choose another --port"
            raise FashionClfError(message) from None
        raise FashionClfError(f"cannot listen on {_address(host, port)} ({exc.strerror or exc})") from None
    return listener


def url(listener: socket.socket) -> str:
    """Where a listening socket is served, with the port it got (for port 0)."""
    host, port = listener.getsockname()[:2]
    return f"http://{_address(host, port)}/"


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
