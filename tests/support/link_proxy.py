"""The network between the deploy client and the loopback board, as a TCP forwarder that can lose a close.

A client that dies behind a dropped link never tells the board: the board's sshd keeps the session (and the
deploy lock held by it) until ClientAliveInterval notices. Killing the client process on loopback would close its
socket cleanly instead, so the tests connect through this forwarder, which does not pass the client's close on:
the board side of the connection stays open exactly as it does when the cable is pulled.
"""
from __future__ import annotations

import contextlib
import socket
import threading


class DroppingLink:
    def __init__(self, target_port: int):
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        self.closed = False
        self.frozen = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            board = socket.create_connection(("127.0.0.1", self.target_port))
            self.sockets += [client, board]
            threading.Thread(target=self._forward, args=(client, board), daemon=True).start()
            threading.Thread(target=self._forward, args=(board, client), daemon=True).start()

    def freeze(self) -> None:
        """A half-dead link (a Wi-Fi that associates but passes nothing): bytes stop, no connection closes."""
        self.frozen.set()

    def _forward(self, source: socket.socket, destination: socket.socket) -> None:
        """Bytes one way; when `source` ends, stop forwarding but leave `destination` open (the close is lost)."""
        while True:
            try:
                data = source.recv(1 << 16)
                if not data:
                    return
                if not self.frozen.is_set():
                    destination.sendall(data)
            except OSError:
                return

    def close(self) -> None:
        """The link comes back down for good: every connection through it ends now."""
        self.closed = True
        self.listener.close()
        for s in self.sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
