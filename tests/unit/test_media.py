import asyncio
import base64

import pytest

from cluster.config import MediaConfig, ObjectStoreConfig
from deployments.openai.media import (
    ImageFetcher,
    ImageFetchError,
    check_public_host,
    decode_data_url,
    is_public_address,
)

pytestmark = pytest.mark.unit


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
        asyncio.run(check_public_host("localhost", 443))


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
