"""A small TCP proxy between the worker and the service replicas that a nemesis can cut.

Each accepted connection goes to the first upstream that accepts it (so the worker fails
over when one replica is down). `cut()` closes every open connection and refuses new ones
(accepted, then closed at once) until `restore()`.
"""

from __future__ import annotations

import contextlib
import socket
import threading

from tests.support import free_port


class CuttableProxy:
    def __init__(self, upstreams: list[int]) -> None:
        self.upstreams = upstreams
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._cut = threading.Event()
        self._stop = threading.Event()
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        self._listener.settimeout(0.2)
        self._thread = threading.Thread(target=self._accept, daemon=True, name="proxy")

    def start(self) -> CuttableProxy:
        self._thread.start()
        return self

    def cut(self) -> None:
        self._cut.set()
        with self._lock:
            sockets, self._open = list(self._open), set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def restore(self) -> None:
        self._cut.clear()

    def close(self) -> None:
        self._stop.set()
        self.cut()
        self._thread.join(timeout=5)
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self._cut.is_set():
                client.close()
                continue
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _connect(self) -> socket.socket | None:
        for port in self.upstreams:
            try:
                return socket.create_connection(("127.0.0.1", port), timeout=1)
            except OSError:
                continue
        return None

    def _serve(self, client: socket.socket) -> None:
        upstream = self._connect()
        if upstream is None or self._cut.is_set():
            client.close()
            if upstream:
                upstream.close()
            return
        upstream.settimeout(None)
        with self._lock:
            self._open.update((client, upstream))
        pump = threading.Thread(target=self._pump, args=(upstream, client), daemon=True)
        pump.start()
        self._pump(client, upstream)
        pump.join()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                target.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            with self._lock:
                self._open.discard(source)
                self._open.discard(target)
            source.close()
