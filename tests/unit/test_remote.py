"""The OpenAI-compatible request and the reading of its streamed events."""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

from agents.errors import ModelFailed
from agents.remote import (
    DONE,
    RemoteChatModel,
    close_pools,
    event_data,
    parse_event,
    pool,
)
from agents.state import Usage


def test_the_request_is_a_streamed_completion_with_usage() -> None:
    model = RemoteChatModel(base_url="http://h/v1/", api_key="sk-1", model_name="m", max_tokens=9)
    prompt = [SystemMessage("be brief"), HumanMessage("hi"), AIMessage("hello"), HumanMessage("?")]
    url, body, headers = model._request(prompt)
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
    assert keyless._request(prompt)[2] == {}


def test_a_message_the_api_has_no_role_for_is_refused() -> None:
    model = RemoteChatModel(base_url="http://h/v1", model_name="m")
    with pytest.raises(ValueError, match="tool message"):
        model._request([ToolMessage("x", tool_call_id="1")])


def test_only_data_lines_carry_events() -> None:
    assert [event_data(line) for line in [": keep-alive", "", "event: message"]] == [None] * 3
    assert event_data('data: {"a": 1} ') == '{"a": 1}'
    assert event_data("data:[DONE]") == DONE


def test_an_event_gives_its_text_or_its_usage() -> None:
    assert parse_event('{"choices": [{"delta": {"content": "Hi"}}]}') == "Hi"
    usage = '{"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 5}}'
    assert parse_event(usage) == Usage(3, 5)
    assert parse_event('{"choices": [{"delta": {"role": "assistant"}}]}') is None
    assert parse_event('{"choices": [{"delta": {}, "finish_reason": "stop"}]}') is None


def test_stop_sequences_are_refused_not_ignored() -> None:
    model = RemoteChatModel(base_url="http://h/v1", model_name="m")
    with pytest.raises(ValueError, match="stop sequences"):
        model.invoke("hi", stop=["\n"])


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
        parse_event(data)


def test_an_error_event_says_what_the_server_said() -> None:
    with pytest.raises(ModelFailed, match="reported an error: rate limited"):
        parse_event('{"error": {"message": "rate limited"}}')


async def test_each_event_loop_has_one_pool_until_closed() -> None:
    first = pool(5.0)
    assert pool(5.0) is first and pool(9.0) is not first
    await close_pools()
    assert first.is_closed
    assert pool(5.0) is not first
    await close_pools()
