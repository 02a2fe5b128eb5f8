import asyncio
import base64
import io

import pytest

from cluster.config import MediaConfig, ObjectStoreConfig
from deployments.openai.media import (
    ImageFetcher,
    ImageFetchError,
    check_image_header,
    decode_data_url,
    is_public_address,
    resolve_host,
)

pytestmark = pytest.mark.unit


def _png(width: int, height: int, mode: str = "RGB", image_format: str = "PNG") -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new(mode, (width, height)).save(buffer, image_format)
    return buffer.getvalue()


TINY_PNG = _png(4, 4)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "0.0.0.0",
        "::1",
        "fe80::1",
        "fc00::1",
        "::ffff:127.0.0.1",
        "100.64.0.1",
        "224.0.0.1",
    ],
)
def test_non_public_addresses_refused(address):
    assert not is_public_address(address)


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"])
def test_public_addresses_allowed(address):
    assert is_public_address(address)


def test_localhost_name_is_refused():
    with pytest.raises(ImageFetchError, match="loopback, link-local or private"):
        asyncio.run(resolve_host("localhost", 443))


def test_data_url_decoding_and_limits():
    data = b"\x89PNG fake"
    url = "data:image/png;base64," + base64.b64encode(data).decode()
    assert decode_data_url(url, 1024) == data
    with pytest.raises(ImageFetchError, match="larger than"):
        decode_data_url("data:image/png;base64," + base64.b64encode(b"x" * 5000).decode(), 1024)
    with pytest.raises(ImageFetchError, match="not valid base64"):
        decode_data_url("data:image/png;base64,@@@@", 1024)
    with pytest.raises(ImageFetchError, match="media type 'text/html'"):
        decode_data_url("data:text/html;base64,AAAA", 1024)
    with pytest.raises(ImageFetchError, match="separating"):
        decode_data_url("data:image/png;base64", 1024)


def _fetcher(**media):
    return ImageFetcher(MediaConfig(**media), ObjectStoreConfig())


@pytest.mark.parametrize(
    "url, message",
    [
        ("ftp://example.com/a.png", "unsupported image URL scheme 'ftp'"),
        ("http://example.com/a.png", "unsupported image URL scheme 'http'"),
        ("file:///etc/passwd", "unsupported image URL scheme 'file'"),
        ("https://127.0.0.1/a.png", "loopback"),
        ("https://169.254.169.254/latest/meta-data", "link-local"),
        ("s3://bucket-only", "must name a bucket and a key"),
    ],
)
def test_fetch_refuses_bad_urls(url, message):
    with pytest.raises(ImageFetchError, match=message):
        asyncio.run(_fetcher().fetch(url))


def test_fetch_timeout_applies():
    fetcher = _fetcher(fetch_timeout_s=0.2, allow_private_networks=True)

    async def run():
        import socket

        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        try:
            # Accepts the TCP connection and never answers the TLS handshake.
            await fetcher.fetch(f"https://127.0.0.1:{port}/slow.png")
        finally:
            server.close()
            await fetcher.close()

    with pytest.raises((asyncio.TimeoutError, ImageFetchError)):
        asyncio.run(run())


def test_s3_urls_refused_without_allow_list():
    # Empty allow-list: no s3 object is read for a request, whatever the credentials could read.
    with pytest.raises(ImageFetchError, match="not under an allowed bucket"):
        asyncio.run(_fetcher().fetch("s3://private-bucket/secret.png"))


def test_s3_allow_list_matches_bucket_and_prefix():
    from cluster.config import S3MediaConfig

    allow = S3MediaConfig(allow=["public", "s3://mixed/images/"])
    assert allow.allows("public", "any/key.png")
    assert allow.allows("mixed", "images/cat.png")
    assert not allow.allows("mixed", "private/cat.png")
    assert not allow.allows("publicity", "key.png")
    fetcher = ImageFetcher(MediaConfig(s3=allow), ObjectStoreConfig())
    with pytest.raises(ImageFetchError, match="not under an allowed bucket"):
        asyncio.run(fetcher.fetch("s3://mixed/private/cat.png"))


class _TLSImageServer:
    """An https server on 127.0.0.1 with a certificate for `name`; records each request's Host and SNI."""

    def __init__(self, name: str, redirect_to: str | None = None):
        import trustme

        self.name = name
        self.redirect_to = redirect_to
        self.ca = trustme.CA()
        self.seen: list[tuple[str, str | None]] = []

    async def __aenter__(self):
        import ssl

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert(self.name).configure_cert(context)
        sni: list[str | None] = [None]
        context.sni_callback = lambda sock, server_name, ctx: sni.__setitem__(0, server_name)

        async def answer(reader, writer):
            head = await reader.readuntil(b"\r\n\r\n")
            host = next(
                line.split(b":", 1)[1].strip().decode()
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"host:")
            )
            self.seen.append((host, sni[0]))
            if self.redirect_to and len(self.seen) == 1:
                writer.write(
                    f"HTTP/1.1 302 Found\r\nLocation: {self.redirect_to}\r\nContent-Length: 0\r\n\r\n".encode()
                )
            else:
                head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(TINY_PNG)}\r\nConnection: close\r\n\r\n"
                writer.write(head.encode() + TINY_PNG)
            await writer.drain()
            writer.close()

        self.server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=context)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc):
        self.server.close()
        await self.server.wait_closed()


def _pinned_fetcher(server, answers: dict[str, list[str]]):
    """A fetcher trusting the server's CA whose resolver answers from `answers`, each name once."""
    import socket
    import ssl

    import httpx

    fetcher = _fetcher(allow_private_networks=True)
    context = ssl.create_default_context()
    server.ca.configure_trust(context)
    fetcher._http = httpx.AsyncClient(verify=context, follow_redirects=False)
    lookups: list[str] = []

    async def fake_getaddrinfo(host, port, **kwargs):
        lookups.append(host)
        address = answers[host].pop(0)  # a second lookup of the same name fails the test
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    return fetcher, fake_getaddrinfo, lookups


def test_https_fetch_connects_to_the_checked_address():
    # The name resolves once; the connection goes to that address, with the name kept for SNI,
    # certificate checking and Host. "images.test" exists in no DNS: a second resolution by the
    # HTTP client would fail the fetch.
    async def run():
        async with _TLSImageServer("images.test") as server:
            fetcher, fake, lookups = _pinned_fetcher(server, {"images.test": ["127.0.0.1"]})
            asyncio.get_running_loop().getaddrinfo = fake
            try:
                data = await fetcher.fetch(f"https://images.test:{server.port}/cat.png")
            finally:
                await fetcher.close()
            return data, server.seen, lookups, server.port

    data, seen, lookups, port = asyncio.run(run())
    assert data == TINY_PNG
    assert lookups == ["images.test"]
    assert seen == [(f"images.test:{port}", "images.test")]  # (Host header, TLS SNI)


def test_https_redirect_is_checked_again(monkeypatch):
    from deployments.openai import media

    # The test server must listen on loopback: count 127.0.0.1 as public, nothing else.
    real = media.is_public_address
    monkeypatch.setattr(media, "is_public_address", lambda address: address == "127.0.0.1" or real(address))

    # The first hop is allowed; the redirect names a host that resolves to a private address.
    async def run():
        async with _TLSImageServer("images.test", redirect_to="https://internal.test/meta") as server:
            fetcher, fake, lookups = _pinned_fetcher(
                server, {"images.test": ["127.0.0.1"], "internal.test": ["10.0.0.7"]}
            )
            fetcher.media = MediaConfig(allow_private_networks=False)
            asyncio.get_running_loop().getaddrinfo = fake
            try:
                with pytest.raises(ImageFetchError, match="internal.test.*10.0.0.7"):
                    await fetcher.fetch(f"https://images.test:{server.port}/cat.png")
            finally:
                await fetcher.close()
            return lookups

    assert asyncio.run(run()) == ["images.test", "internal.test"]


@pytest.mark.parametrize(
    "data, code, message",
    [
        (b"hello world", "invalid_image", "not a recognised image format"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "invalid_image", "not a recognised image format"),
        # EPS: PIL would decode it through Ghostscript.
        (_png(16, 16, image_format="EPS"), "invalid_image", "not a recognised image format"),
        (_png(16, 16, image_format="ICO"), "invalid_image", "not a recognised image format"),
        (_png(8000, 10), "invalid_image", "8000x10 pixels.*at most 200 times"),
        (_png(10, 2001), "invalid_image", "10x2001 pixels"),
        (_png(3000, 3000, "1"), "image_too_large", "3000x3000 = 9000000 pixels; the limit is 1000000"),
        (_png(40000, 40000, "1"), "image_too_large", "too large to decode"),  # past PIL's bomb guard
    ],
    ids=["text", "svg", "eps", "ico", "wide", "tall", "over-limit", "bomb"],
)
def test_image_header_refuses_what_the_models_cannot_take(data, code, message):
    with pytest.raises(ImageFetchError, match=message) as caught:
        check_image_header(data, max_pixels=1_000_000)
    assert caught.value.code == code


@pytest.mark.parametrize("size", [(4, 4), (1, 1), (2000, 10), (1000, 1000)])
def test_image_header_accepts_images_within_the_limits(size):
    check_image_header(_png(*size), max_pixels=1_000_000)


def test_fetched_data_urls_are_header_checked():
    fetcher = _fetcher()
    wide = "data:image/png;base64," + base64.b64encode(_png(8000, 10)).decode()
    with pytest.raises(ImageFetchError, match="at most 200 times"):
        asyncio.run(fetcher.fetch(wide))
    tiny = "data:image/png;base64," + base64.b64encode(TINY_PNG).decode()
    assert asyncio.run(fetcher.fetch(tiny)) == TINY_PNG
