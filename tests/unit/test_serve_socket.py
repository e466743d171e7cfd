"""The service's listening socket."""

from __future__ import annotations

import socket

from integrator.cli.local import listen


def test_the_serving_socket_names_tcp_so_that_accepted_connections_get_tcp_nodelay() -> None:
    """asyncio sets TCP_NODELAY only on sockets whose protocol is IPPROTO_TCP; with protocol 0
    every kept-alive request waited ~40 ms for a delayed ACK (measured by bench worker)."""
    sock = listen("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP
    finally:
        sock.close()
