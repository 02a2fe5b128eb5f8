import asyncio
import base64
import io

import pytest
from PIL import Image

from cluster.config import MediaConfig, ObjectStoreConfig
from deployments.engines.base import ImageInput, InvalidImageError
from deployments.openai.media import ImageFetcher
from deployments.openai.messages import to_chat_messages
from deployments.openai.protocol import ChatCompletionRequest

pytestmark = pytest.mark.unit


def png_data_url(color=(10, 20, 30), size=(8, 8)):
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def convert(messages, max_images=4):
    request = ChatCompletionRequest.model_validate({"messages": messages})
    fetcher = ImageFetcher(MediaConfig(), ObjectStoreConfig())
    return asyncio.run(to_chat_messages(request.messages, fetcher, max_images))


def test_strings_and_parts_keep_order():
    url = png_data_url()
    out = convert(
        [
            {"role": "developer", "content": "be brief"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "look:"},
                    {"type": "image_url", "image_url": {"url": url}},
                    {"type": "text", "text": "what is it?"},
                ],
            },
            {"role": "assistant", "content": None},
        ]
    )
    assert [m.role for m in out] == ["system", "user", "assistant"]
    assert out[0].content == ["be brief"]
    assert out[1].content[0] == "look:" and isinstance(out[1].content[1], ImageInput)
    assert out[1].content[1].data.startswith(b"\x89PNG")
    assert out[1].text == "look:what is it?" and len(out[1].images) == 1


def test_too_many_images_refused_before_fetching():
    parts = [{"type": "image_url", "image_url": {"url": "https://127.0.0.1/x.png"}}] * 3
    with pytest.raises(InvalidImageError, match="3 images; at most 2"):
        convert([{"role": "user", "content": parts}], max_images=2)


def test_bad_image_url_names_the_part():
    with pytest.raises(InvalidImageError) as info:
        convert(
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "x"},
                        {"type": "image_url", "image_url": {"url": "gopher://x/y"}},
                    ],
                }
            ]
        )
    assert info.value.param == "messages[0].content[1].image_url"
