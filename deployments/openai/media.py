"""Fetch the images that chat messages point at: `data:` URLs, `https://` URLs and `s3://` objects.

Remote fetches have size and time limits, and https URLs that resolve to loopback, link-local,
private or otherwise non-public addresses are refused (server-side request forgery), on every
redirect hop. The connection goes to the address that was checked (the URL's host is kept for TLS
SNI, certificate checking and the Host header), so a second DNS answer cannot swap in a private
address (DNS rebinding). `s3://` URLs are read with the server's credentials, so only buckets and
prefixes on `serving.media.s3.allow` may be named.

Every fetched image's header is read before the request goes on (`check_image_header`), so bytes
that are not an image, an image over `serving.media.max_image_pixels`, or a shape the Qwen image
processor refuses are a 400 from the ingress, not work for a model replica.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ipaddress
import socket
from urllib.parse import unquote_to_bytes, urljoin, urlsplit, urlunsplit

from cluster.config import MediaConfig, ObjectStoreConfig
from deployments.engines.base import InvalidImageError
from deployments.engines.image_checks import check_image_size, open_image

MAX_REDIRECTS = 3


class ImageFetchError(InvalidImageError):
    """An image URL that cannot be used: bad form, refused address, too large, unreachable."""

    def __init__(self, message: str, param: str | None = "messages", code: str | None = "invalid_image_url"):
        super().__init__(message, param, code)


def is_public_address(address: str) -> bool:
    """Whether an IP address is globally routable (not loopback, private, link-local, reserved...)."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


async def resolve_host(host: str, port: int, allow_private: bool = False) -> str:
    """Resolve `host` once and return the address to connect to.

    Unless `allow_private`, the host is refused unless every address it resolves to is public.

    Raises:
        ImageFetchError: the host does not resolve, or resolves to a non-public address.
    """
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise ImageFetchError(f"image host {host!r} does not resolve: {error}") from None
    if not infos:
        raise ImageFetchError(f"image host {host!r} does not resolve")
    for info in infos:
        address = info[4][0]
        if not allow_private and not is_public_address(address):
            raise ImageFetchError(
                f"image URL host {host!r} resolves to {address}, a loopback, link-local or private "
                "address; only public hosts may be fetched"
            )
    return infos[0][4][0]


def pinned_url(url: str, address: str) -> str:
    """`url` with its host replaced by the resolved `address` (port, path and query kept)."""
    parts = urlsplit(url)
    host = f"[{address}]" if ":" in address else address
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))


def decode_data_url(url: str, max_bytes: int) -> bytes:
    """Bytes of a `data:[<type>][;base64],<data>` URL.

    Raises:
        ImageFetchError: malformed, not an image type, or over `max_bytes`.
    """
    header, sep, payload = url[5:].partition(",")
    if not sep:
        raise ImageFetchError("data URL has no ',' separating header and data")
    media_type = header.split(";")[0].strip().lower()
    if media_type and not media_type.startswith("image/"):
        raise ImageFetchError(f"data URL has media type {media_type!r}; expected image/*")
    # base64 grows data by 4/3: refuse early, before decoding a huge payload.
    if len(payload) > max_bytes * 4 // 3 + 4:
        raise ImageFetchError(f"image is larger than the {max_bytes}-byte limit", code="image_too_large")
    try:
        data = (
            base64.b64decode(payload, validate=True)
            if header.endswith(";base64")
            else unquote_to_bytes(payload)
        )
    except (binascii.Error, ValueError) as error:
        raise ImageFetchError(f"data URL is not valid base64: {error}") from None
    if len(data) > max_bytes:
        raise ImageFetchError(f"image is larger than the {max_bytes}-byte limit", code="image_too_large")
    if not data:
        raise ImageFetchError("data URL holds no data")
    return data


def check_image_header(data: bytes, max_pixels: int) -> None:
    """Refuse bytes whose header is not an image's, or describes one the models cannot take
    (`image_checks`: format, area, aspect ratio).

    Reads the header only (PIL opens lazily), so it costs microseconds whatever the image's size;
    the model replica still decodes the pixels, and refuses what the header did not show.

    Raises:
        ImageFetchError: with the check's message and code (`invalid_image`, `image_too_large`).
    """
    try:
        with open_image(data) as probe:
            check_image_size(*probe.size, max_pixels, setting="serving.media.max_image_pixels")
    except InvalidImageError as error:
        raise ImageFetchError(error.message, code=error.code) from None


class ImageFetcher:
    """Resolves image URLs to bytes with the configured limits. One per ingress replica."""

    def __init__(self, media: MediaConfig, object_store: ObjectStoreConfig):
        self.media = media
        self.object_store = object_store
        self._http = None
        self._s3 = None

    async def fetch(self, url: str) -> bytes:
        """The encoded image `url` names, its header checked (`check_image_header`).

        Raises:
            ImageFetchError: for any URL that cannot be used, or bytes that are not an image the
                models accept (the message says why).
        """
        scheme = urlsplit(url).scheme.lower()
        if scheme == "data":
            data = decode_data_url(url, self.media.max_image_bytes)
        elif scheme == "https":
            data = await asyncio.wait_for(self._fetch_https(url), self.media.fetch_timeout_s)
        elif scheme == "s3":
            data = await asyncio.wait_for(asyncio.to_thread(self._fetch_s3, url), self.media.fetch_timeout_s)
        else:
            raise ImageFetchError(
                f"unsupported image URL scheme {scheme or '(none)'!r}; use data:, https: or s3:"
            )
        check_image_header(data, self.media.max_image_pixels)
        return data

    async def _fetch_https(self, url: str) -> bytes:
        import httpx

        if self._http is None:
            self._http = httpx.AsyncClient(follow_redirects=False, timeout=self.media.fetch_timeout_s)
        for _ in range(MAX_REDIRECTS + 1):
            parts = urlsplit(url)
            if parts.scheme != "https" or not parts.hostname:
                raise ImageFetchError(f"image URL {url[:200]!r} must be an https URL with a host")
            try:
                port = parts.port or 443
            except ValueError:
                raise ImageFetchError(f"image URL {url[:200]!r} has an invalid port") from None
            address = await resolve_host(parts.hostname, port, self.media.allow_private_networks)
            host_header = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
            try:
                # Connect to the checked address; TLS (SNI, certificate) and Host use the name.
                async with self._http.stream(
                    "GET",
                    pinned_url(url, address),
                    headers={"Host": host_header},
                    extensions={"sni_hostname": parts.hostname},
                ) as response:
                    if response.is_redirect:
                        url = urljoin(url, response.headers.get("location", ""))
                        continue
                    if response.status_code != 200:
                        raise ImageFetchError(
                            f"fetching image {url[:200]!r} returned HTTP {response.status_code}"
                        )
                    return await self._read_limited(response)
            except httpx.HTTPError as error:
                raise ImageFetchError(f"fetching image {url[:200]!r} failed: {error}") from None
        raise ImageFetchError(f"image URL redirected more than {MAX_REDIRECTS} times")

    async def _read_limited(self, response) -> bytes:
        limit = self.media.max_image_bytes
        declared = response.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise ImageFetchError(f"image is larger than the {limit}-byte limit", code="image_too_large")
        chunks, total = [], 0
        async for chunk in response.aiter_bytes():
            total += len(chunk)
            if total > limit:
                raise ImageFetchError(f"image is larger than the {limit}-byte limit", code="image_too_large")
            chunks.append(chunk)
        return b"".join(chunks)

    def _fetch_s3(self, url: str) -> bytes:
        import boto3
        import botocore.exceptions

        parts = urlsplit(url)
        bucket, key = parts.netloc, parts.path.lstrip("/")
        if not bucket or not key:
            raise ImageFetchError(f"s3 URL {url!r} must name a bucket and a key")
        if not self.media.s3.allows(bucket, key):
            raise ImageFetchError(
                f"s3 URL {url[:200]!r} is not under an allowed bucket or prefix "
                "(serving.media.s3.allow); this server reads no other objects for a request"
            )
        if self._s3 is None:
            self._s3 = boto3.client(
                "s3", endpoint_url=self.object_store.resolved_endpoint(), region_name=self.object_store.region
            )
        limit = self.media.max_image_bytes
        try:
            head = self._s3.head_object(Bucket=bucket, Key=key)
            if head["ContentLength"] > limit:
                raise ImageFetchError(
                    f"image {url!r} is larger than the {limit}-byte limit", code="image_too_large"
                )
            body = self._s3.get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{limit}")["Body"].read()
        except botocore.exceptions.ClientError as error:
            raise ImageFetchError(
                f"reading {url!r} failed: {error.response.get('Error', {}).get('Message', error)}"
            ) from None
        except botocore.exceptions.BotoCoreError as error:
            raise ImageFetchError(f"reading {url!r} failed: {error}") from None
        if len(body) > limit:
            raise ImageFetchError(
                f"image {url!r} is larger than the {limit}-byte limit", code="image_too_large"
            )
        return body

    async def close(self) -> None:
        """Release the HTTP client."""
        if self._http is not None:
            await self._http.aclose()
            self._http = None
