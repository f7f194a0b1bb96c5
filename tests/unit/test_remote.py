"""The OpenAI-compatible request and the reading of its streamed events."""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

from agents.errors import ModelFailed
from agents.remote import RemoteChatModel, chunk_of, events


def test_the_request_is_a_streamed_completion_with_usage() -> None:
    model = RemoteChatModel(base_url="http://h/v1/", api_key="sk-1", model_name="m", max_tokens=9)
    prompt = [SystemMessage("be brief"), HumanMessage("hi"), AIMessage("hello"), HumanMessage("?")]
    url, body, headers = model._request(prompt, None)
    assert url == "http://h/v1/chat/completions"
    assert headers == {"Authorization": "Bearer sk-1"}
    assert body == {
        "model": "m",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "?"},
        ],
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_completion_tokens": 9,
    }
    keyless = RemoteChatModel(base_url="http://h/v1", model_name="m")
    assert keyless._request(prompt, ["\n"])[2] == {}
    assert keyless._request(prompt, ["\n"])[1]["stop"] == ["\n"]


def test_a_message_the_api_has_no_role_for_is_refused() -> None:
    model = RemoteChatModel(base_url="http://h/v1", model_name="m")
    with pytest.raises(ValueError, match="tool message"):
        model._request([ToolMessage("x", tool_call_id="1")], None)


def test_events_are_the_data_lines_up_to_done() -> None:
    lines = [": keep-alive", "", "event: message", "data: {}", "data:[DONE]", "data: {}"]
    assert list(events(iter(lines))) == ["{}"]


def test_an_event_gives_its_text_or_its_usage() -> None:
    text = chunk_of('{"choices": [{"delta": {"content": "Hi"}}]}')
    assert text is not None and text.text == "Hi"
    usage = chunk_of('{"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 5}}')
    assert usage is not None and usage.message.usage_metadata == {
        "input_tokens": 3,
        "output_tokens": 5,
        "total_tokens": 8,
    }
    assert chunk_of('{"choices": [{"delta": {"role": "assistant"}}]}') is None
    assert chunk_of('{"choices": [{"delta": {}, "finish_reason": "stop"}]}') is None


@pytest.mark.parametrize(
    "data",
    [
        "{not json",
        "[1, 2]",
        '{"choices": [{"nodelta": 1}]}',
        '{"choices": [], "usage": {"prompt_tokens": 3}}',
        '{"choices": [], "usage": {"prompt_tokens": "x", "completion_tokens": 1}}',
    ],
)
def test_an_event_we_cannot_use_is_a_clear_failure(data: str) -> None:
    with pytest.raises(ModelFailed, match="could not use"):
        chunk_of(data)


def test_an_error_event_says_what_the_server_said() -> None:
    with pytest.raises(ModelFailed, match="reported an error: rate limited"):
        chunk_of('{"error": {"message": "rate limited"}}')
