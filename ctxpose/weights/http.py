"""Streaming HTTP download with resume (HTTP Range), retries with backoff and timeouts; https only.

pooch fetches a URL in one go into a temporary file; it has no Range resume across runs, so this module
streams into ``<dest>.part`` itself (requests) and hands the finished file to pooch, which checks the hash
and moves it into place (:mod:`ctxpose.weights.fetch`).

Rules: only ``https://`` URLs, and ``http://`` to a loopback host (127.0.0.1, ::1, localhost: the tests'
local server); redirects are checked by the same rule before they are followed. Nothing downloaded is
executed.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlparse

import requests
import urllib3.exceptions

from ctxpose._version import __version__
from ctxpose.errors import CtxposeError

logger = logging.getLogger(__name__)

#: progress(event, n): ("start", bytes already there), ("total", total bytes or -1), ("advance", n), ("restart", 0)
ProgressHook = Callable[[str, int], None]


class DownloadError(CtxposeError):
    """A URL could not be fetched (refused scheme, HTTP error, timeout, connection lost after retries)."""


@dataclass(frozen=True)
class HttpSettings:
    """Network settings of a fetch.

    Attributes:
        connect_timeout, read_timeout: seconds (read: longest silence while streaming).
        retries: further attempts after a failed one (resuming each time).
        backoff: seconds before the first retry, doubled each time, at most 30.
        chunk_size: the most bytes one read returns (a read returns what has arrived, so a dropped
            connection loses nothing already received).
    """

    connect_timeout: float = 15.0
    read_timeout: float = 60.0
    retries: int = 4
    backoff: float = 2.0
    chunk_size: int = 1 << 20


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_url(url: str) -> str:
    """``url`` if it may be fetched (https, or http to loopback), else raise :class:`DownloadError`."""
    parts = urlparse(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and parts.hostname and _is_loopback(parts.hostname):
        return url
    raise DownloadError(f"{url}: refused, only https:// URLs are fetched (http:// only to this machine)")


class SafeSession(requests.Session):
    """A requests session that checks every redirect target with :func:`check_url` before following it."""

    def __init__(self) -> None:
        super().__init__()
        self.headers["User-Agent"] = f"ctxpose/{__version__}"

    def get_redirect_target(self, resp: requests.Response) -> str | None:
        target = super().get_redirect_target(resp)
        if target:
            check_url(urljoin(resp.url, target))
        return target


def _content_range_start(resp: requests.Response) -> int | None:
    m = re.match(r"bytes (\d+)-\d+/(\d+|\*)", resp.headers.get("Content-Range", ""))
    return int(m.group(1)) if m else None


def _total(resp: requests.Response, offset: int) -> int | None:
    m = re.match(r"bytes \d+-\d+/(\d+)", resp.headers.get("Content-Range", ""))
    if m:
        return int(m.group(1))
    length = resp.headers.get("Content-Length")
    return offset + int(length) if length and length.isdigit() else None


_RETRYABLE_STATUS = {408, 425, 429, 500, 502, 503, 504}


def download(url: str, part: Path, session: requests.Session, settings: HttpSettings,
             progress: ProgressHook | None = None, expected_size: int | None = None) -> int:
    """Stream ``url`` into ``part``, resuming from what ``part`` already holds.

    A partial file is continued with ``Range: bytes=N-``; a server that ignores Range (200 instead of
    206) or answers another range makes the download restart from byte 0. Connection errors, timeouts
    and 5xx/429 answers are retried ``settings.retries`` times with exponential backoff, resuming each time.

    Args:
        url: https (or loopback http) URL.
        part: the partial file (created, appended to).
        session: a :class:`SafeSession`.
        settings: timeouts and retries.
        progress: optional hook (see ``ProgressHook``).
        expected_size: bytes the file must have, when known.

    Returns:
        The size of the complete file, bytes.

    Raises:
        DownloadError: refused URL, HTTP error, or still failing after the retries (``part`` is kept, so a
            later run resumes).
    """
    check_url(url)
    emit = progress or (lambda event, n: None)
    part.parent.mkdir(parents=True, exist_ok=True)
    last_error = ""
    for attempt in range(settings.retries + 1):
        if attempt:
            time.sleep(min(settings.backoff * 2 ** (attempt - 1), 30.0))
        have = part.stat().st_size if part.exists() else 0
        if expected_size is not None and have > expected_size:
            part.unlink()
            have = 0
        # identity: byte offsets of the stored file are offsets of the served file, so a Range resumes it
        headers = {"Accept-Encoding": "identity", **({"Range": f"bytes={have}-"} if have else {})}
        try:
            with session.get(url, stream=True, headers=headers,
                             timeout=(settings.connect_timeout, settings.read_timeout)) as resp:
                if resp.status_code == 416 and have:  # nothing after byte `have`: complete, or stale
                    total = _total(resp, 0)
                    if total == have or (total is None and expected_size == have):
                        return have
                    part.unlink()
                    last_error = "the server refused to resume (416)"
                    continue
                if resp.status_code in _RETRYABLE_STATUS:
                    last_error = f"HTTP {resp.status_code} {resp.reason}"
                    continue
                if resp.status_code not in (200, 206):
                    raise DownloadError(f"{url}: HTTP {resp.status_code} {resp.reason}")
                resume = resp.status_code == 206 and _content_range_start(resp) == have
                if have and not resume:
                    logger.info("%s: the server ignored the range request; starting over", url)
                    emit("restart", 0)
                    have = 0
                total = _total(resp, have)
                if expected_size is not None and total is not None and total != expected_size:
                    raise DownloadError(f"{url}: the server announces {total:,} bytes, expected {expected_size:,}")
                emit("start", have)
                emit("total", total if total is not None else -1)
                try:
                    _stream_to(resp, part, have, settings.chunk_size, emit)
                except urllib3.exceptions.ReadTimeoutError:
                    last_error = (f"read time-out (no data for {settings.read_timeout:g} s) at "
                                  f"{part.stat().st_size:,} bytes")
                    continue
                except urllib3.exceptions.HTTPError as e:  # ProtocolError: dropped before the announced length
                    last_error = f"connection lost at {part.stat().st_size:,} bytes ({type(e).__name__})"
                    continue
                size = part.stat().st_size
                if total is not None and size != total:
                    last_error = f"connection closed at {size:,} of {total:,} bytes"
                    continue
                return size
        except DownloadError:
            raise
        except requests.exceptions.ConnectTimeout:
            last_error = f"no connection within {settings.connect_timeout:g} s (connect time-out)"
        except requests.exceptions.ReadTimeout:
            last_error = f"read time-out (no answer for {settings.read_timeout:g} s)"
        except (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError) as e:
            last_error = f"connection failed ({type(e).__name__})"
        except requests.exceptions.RequestException as e:
            raise DownloadError(f"{url}: {type(e).__name__}: {e}") from None
        logger.info("%s: attempt %d failed: %s", url, attempt + 1, last_error)
    kept = part.stat().st_size if part.exists() else 0
    raise DownloadError(f"{url}: {last_error} after {settings.retries + 1} attempts"
                        + (f"; {kept:,} bytes kept in {part} for a later resume" if kept else ""))


def _stream_to(resp: requests.Response, part: Path, offset: int, chunk_size: int, emit: ProgressHook) -> None:
    """Append the body of ``resp`` to ``part`` (truncated to ``offset`` bytes first) as it arrives.

    Each read returns what the socket holds (``read1``, at most ``chunk_size`` bytes) and is written and flushed
    at once: when the connection drops, every byte received is in ``part`` for the next Range request.
    (``iter_content`` would lose a partly filled chunk: urllib3 buffers until ``chunk_size`` bytes arrived.)

    Raises:
        urllib3.exceptions.ReadTimeoutError: no data within the read time-out.
        urllib3.exceptions.HTTPError: the connection dropped before the announced length (``ProtocolError``).
    """
    with open(part, "r+b" if part.exists() else "wb") as f:
        f.truncate(offset)
        f.seek(offset)
        while chunk := resp.raw.read1(chunk_size):
            f.write(chunk)
            f.flush()
            emit("advance", len(chunk))


def get_json(url: str, session: requests.Session, settings: HttpSettings, params: dict | None = None) -> dict:
    """GET a JSON object (share-link APIs).

    Raises:
        DownloadError: HTTP error, timeout, or not a JSON object.
    """
    check_url(url)
    try:
        resp = session.get(url, params=params, timeout=(settings.connect_timeout, settings.read_timeout))
    except requests.exceptions.RequestException as e:
        raise DownloadError(f"{url}: {type(e).__name__}") from None
    if resp.status_code != 200:
        raise DownloadError(f"{resp.url}: HTTP {resp.status_code} {resp.reason}")
    try:
        data = resp.json()
    except ValueError:
        raise DownloadError(f"{resp.url}: answer is not JSON") from None
    if not isinstance(data, dict):
        raise DownloadError(f"{resp.url}: answer is not a JSON object")
    return data
