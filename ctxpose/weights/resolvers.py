"""Share links -> direct download URLs: Google Drive, OneDrive (``1drv.ms``), Yandex Disk public links.

* Google Drive: gdown finds the file id (``gdown.parse_url.parse_url``) and reads the "can't scan this
  file for viruses" confirm page of large files (``gdown.download.get_url_from_gdrive_confirmation``); the
  download itself goes through :func:`ctxpose.weights.http.download` like every other (resume, retries).
* OneDrive: the shares API, ``GET {api}/shares/u!{base64url(link)}/root``: a driveItem with
  ``@content.downloadUrl`` (or ``@microsoft.graph.downloadUrl``), ``name``, ``size`` and ``file.hashes``
  (learn.microsoft.com, "shares get": encoding sharing URLs).
* Yandex Disk: the public resources API, ``GET {api}/public/resources/download?public_key=LINK`` ->
  ``{"href", "method", "templated"}``, and ``GET {api}/public/resources?public_key=LINK`` -> ``name``,
  ``size``, ``md5``, ``sha256`` (yandex.ru/dev/disk-api, public resources).

Each resolver returns a :class:`Resolved`: the URL to stream plus what the service says about the file
(name, size, digests), which the fetch then checks too. The API roots are parameters (``Endpoints``) so
tests can serve recorded responses from 127.0.0.1.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from urllib.parse import urlparse

import requests

from ctxpose.weights.http import DownloadError, HttpSettings, check_url, get_json

GDRIVE_HOSTS = ("drive.google.com", "docs.google.com", "drive.usercontent.google.com")
ONEDRIVE_HOSTS = ("1drv.ms", "onedrive.live.com")
YANDEX_HOSTS = ("disk.yandex.ru", "disk.yandex.com", "yadi.sk", "disk.yandex.net")


@dataclass(frozen=True)
class Endpoints:
    """Roots of the share-link services (overridable for tests)."""

    gdrive_download: str = "https://drive.google.com/uc"
    onedrive_api: str = "https://api.onedrive.com/v1.0"
    yandex_api: str = "https://cloud-api.yandex.net/v1/disk"


@dataclass(frozen=True)
class Resolved:
    """A direct download URL and what the service reports about the file.

    Attributes:
        url: URL to stream.
        service: "direct", "gdrive", "onedrive" or "yandex".
        name: file name the service reports.
        size: bytes the service reports.
        hashes: hashlib name ("sha256", "sha1", "md5") -> lowercase hex digest the service reports.
    """

    url: str
    service: str = "direct"
    name: str | None = None
    size: int | None = None
    hashes: dict[str, str] = field(default_factory=dict)


def service_of(url: str) -> str:
    host = (urlparse(url).hostname or "").lower()
    if host in GDRIVE_HOSTS:
        return "gdrive"
    if host in ONEDRIVE_HOSTS:
        return "onedrive"
    if host in YANDEX_HOSTS:
        return "yandex"
    return "direct"


# ---------------------------------------------------------------------- Google Drive


def gdrive_file_id(url: str) -> str:
    """The file id of a Google Drive link (``/file/d/ID/view``, ``open?id=ID``, ``uc?id=ID``)."""
    from gdown.parse_url import parse_url

    file_id, _ = parse_url(url)
    if not file_id:
        raise DownloadError(f"{url}: not a Google Drive file link (a folder cannot be fetched as one file)")
    return file_id


def gdrive_confirmed_url(page_html: str, link: str) -> str:
    """Direct URL from Google Drive's large-file confirm page.

    Raises:
        DownloadError: the page has no download form (quota exceeded, not shared, removed).
    """
    from gdown.download import get_url_from_gdrive_confirmation
    from gdown.exceptions import FileURLRetrievalError

    try:
        return get_url_from_gdrive_confirmation(page_html)
    except FileURLRetrievalError as e:
        reason = " ".join(str(e).split())
        raise DownloadError(f"{link}: Google Drive gives no download ({reason})") from None


def resolve_gdrive(url: str, session: requests.Session, settings: HttpSettings,
                   endpoints: Endpoints = Endpoints()) -> Resolved:
    """Google Drive link -> direct URL (through the confirm page for files too large to be virus-scanned)."""
    first = f"{endpoints.gdrive_download}?id={gdrive_file_id(url)}&export=download"
    check_url(first)
    try:
        resp = session.get(first, stream=True, timeout=(settings.connect_timeout, settings.read_timeout))
    except requests.exceptions.RequestException as e:
        raise DownloadError(f"{url}: {type(e).__name__}") from None
    with resp:
        if resp.status_code != 200:
            raise DownloadError(f"{url}: HTTP {resp.status_code} {resp.reason}")
        if "Content-Disposition" in resp.headers or not resp.headers.get("Content-Type", "").startswith("text/html"):
            return Resolved(resp.url, "gdrive")  # small file: served directly
        page = resp.text
    direct = gdrive_confirmed_url(page, url)
    return Resolved(check_url(direct), "gdrive")


# ---------------------------------------------------------------------- OneDrive


def onedrive_share_token(link: str) -> str:
    """The shares API token of a sharing URL: ``u!`` + unpadded base64url of the URL."""
    encoded = base64.b64encode(link.encode("utf-8")).decode("ascii")
    return "u!" + encoded.rstrip("=").replace("/", "_").replace("+", "-")


def parse_onedrive_item(item: dict, link: str) -> Resolved:
    """Resolved file from a shares-API driveItem."""
    url = item.get("@content.downloadUrl") or item.get("@microsoft.graph.downloadUrl")
    if not isinstance(url, str):
        raise DownloadError(f"{link}: OneDrive answer has no download URL (is it a folder?)")
    hashes = (item.get("file") or {}).get("hashes") or {}
    found = {alg: str(hashes[key]).lower() for alg, key in (("sha256", "sha256Hash"), ("sha1", "sha1Hash"))
             if isinstance(hashes.get(key), str)}
    size = item.get("size") if isinstance(item.get("size"), int) else None
    return Resolved(check_url(url), "onedrive", item.get("name"), size, found)


def resolve_onedrive(url: str, session: requests.Session, settings: HttpSettings,
                     endpoints: Endpoints = Endpoints()) -> Resolved:
    """OneDrive sharing link -> direct URL through the shares API."""
    item = get_json(f"{endpoints.onedrive_api}/shares/{onedrive_share_token(url)}/root", session, settings)
    return parse_onedrive_item(item, url)


# ---------------------------------------------------------------------- Yandex Disk


def parse_yandex(link_obj: dict, meta: dict | None, link: str) -> Resolved:
    """Resolved file from the public download Link object and (optional) public resource meta."""
    href = link_obj.get("href")
    if not isinstance(href, str) or link_obj.get("templated"):
        raise DownloadError(f"{link}: Yandex Disk answer has no plain download href")
    meta = meta or {}
    if meta.get("type") not in (None, "file"):
        raise DownloadError(f"{link}: Yandex Disk says this is a {meta.get('type')}, not a file")
    hashes = {alg: str(meta[alg]).lower() for alg in ("sha256", "md5") if isinstance(meta.get(alg), str)}
    size = meta.get("size") if isinstance(meta.get("size"), int) else None
    return Resolved(check_url(href), "yandex", meta.get("name"), size, hashes)


def resolve_yandex(url: str, session: requests.Session, settings: HttpSettings,
                   endpoints: Endpoints = Endpoints()) -> Resolved:
    """Yandex Disk public link -> direct URL through the public resources API."""
    params = {"public_key": url}
    link_obj = get_json(f"{endpoints.yandex_api}/public/resources/download", session, settings, params)
    try:
        meta = get_json(f"{endpoints.yandex_api}/public/resources", session, settings,
                        {**params, "fields": "name,size,md5,sha256,type"})
    except DownloadError:
        meta = None  # the metadata only adds checks; the download link is what matters
    return parse_yandex(link_obj, meta, url)


def resolve(url: str, session: requests.Session, settings: HttpSettings,
            endpoints: Endpoints = Endpoints()) -> Resolved:
    """Any registry URL -> what to stream."""
    service = service_of(url)
    if service == "gdrive":
        return resolve_gdrive(url, session, settings, endpoints)
    if service == "onedrive":
        return resolve_onedrive(url, session, settings, endpoints)
    if service == "yandex":
        return resolve_yandex(url, session, settings, endpoints)
    return Resolved(check_url(url))
