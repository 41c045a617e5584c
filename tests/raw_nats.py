"""A NATS client on a bare socket, for sending what nats-py refuses to send (hostile input)."""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass
class RawMsg:
    subject: str
    reply: str
    headers: bytes
    body: bytes

    def header(self, name: str) -> str | None:
        for line in self.headers.split(b"\r\n")[1:]:
            key, _, value = line.partition(b":")
            if key.strip().lower() == name.lower().encode():
                return value.strip().decode()
        return None


class RawNats:
    """Speaks the text protocol directly: CONNECT, SUB, PUB/HPUB, and reads MSG/HMSG."""

    def __init__(self, url: str, timeout: float = 5):
        parts = urlsplit(url)
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=timeout)
        self.buffer = b""
        self._line()  # INFO
        connect = {"verbose": False, "pedantic": False, "headers": True, "protocol": 1,
                   "no_responders": True, "name": "raw-test"}
        self.send(b"CONNECT " + json.dumps(connect).encode() + b"\r\nPING\r\n")
        while self._line() != b"PONG":
            pass

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def sub(self, subject: str, sid: int = 1) -> None:
        self.send(f"SUB {subject} {sid}\r\n".encode())

    def hpub(self, subject: str, reply: str, header_lines: bytes, body: bytes) -> None:
        """HPUB with a header block built from `header_lines` verbatim (one `k: v` each)."""
        block = b"NATS/1.0\r\n" + header_lines + b"\r\n\r\n"
        head = f"HPUB {subject} {reply} {len(block)} {len(block) + len(body)}\r\n".encode()
        self.send(head + block + body + b"\r\n")

    def flush(self) -> None:
        self.send(b"PING\r\n")

    def next_msg(self, timeout: float = 5) -> RawMsg:
        deadline = time.monotonic() + timeout
        while True:
            self.sock.settimeout(max(deadline - time.monotonic(), 0.01))
            line = self._line()
            if line == b"PING":
                self.send(b"PONG\r\n")
                continue
            words = line.split()
            if words and words[0] in (b"MSG", b"HMSG"):
                with_headers = words[0] == b"HMSG"
                reply = words[3].decode() if len(words) == (6 if with_headers else 5) else ""
                header_len = int(words[-2]) if with_headers else 0
                data = self._exactly(int(words[-1]) + 2)[:-2]
                return RawMsg(words[1].decode(), reply, data[:header_len], data[header_len:])
            if words and words[0] == b"-ERR":
                raise ConnectionError(line.decode())

    def _line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            self._read()
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    def _exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self._read()
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def _read(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self.buffer += chunk

    def close(self) -> None:
        self.sock.close()
