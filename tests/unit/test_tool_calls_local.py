"""The bundled model's tool calls: the tools described in its prompt, a `CALL` line read back."""

from __future__ import annotations

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from agents.state import Usage
from agents.tool_calls import Tool, as_local_prompt, read_local_turn

CALC = Tool("calculator", "Arithmetic.", {"type": "object", "properties": {"expression": {}}})


def test_a_call_line_is_a_tool_call_and_the_text_before_it_is_kept() -> None:
    used = Usage(40, 12)
    turn = read_local_turn(
        'Let me compute.\nCALL calculator {"expression": "6*7"}\n', {"calculator"}, used
    )
    assert turn.text == "Let me compute." and turn.usage == used
    [call] = turn.calls
    assert (call.name, call.arguments, call.problem) == ("calculator", {"expression": "6*7"}, None)


def test_an_unknown_tool_or_bad_json_is_a_call_with_a_problem_and_plain_text_is_an_answer() -> None:
    [unknown] = read_local_turn("CALL shell {}", {"calculator"}, None).calls
    assert unknown.problem == "There is no tool called 'shell'."
    [broken] = read_local_turn("CALL calculator {not json}", {"calculator"}, None).calls
    assert broken.problem == "Its arguments are not valid JSON."
    plain = read_local_turn("The answer is 42.", {"calculator"}, None)
    assert (plain.text, plain.calls) == ("The answer is 42.", [])
    assert read_local_turn("CALL calculator {}", set(), None).calls == []  # no tools offered


def test_the_prompt_describes_the_tools_and_replays_calls_and_answers_in_words() -> None:
    prompt = as_local_prompt(
        [
            {"role": "system", "content": "Do the step."},
            {"role": "user", "content": "Compute 6*7."},
            {"role": "assistant", "content": None, "tool_calls": [{"id": "c", "type": "function",
             "function": {"name": "calculator", "arguments": '{"expression": "6*7"}'}}]},
            {"role": "tool", "tool_call_id": "c", "content": "42"},
        ],
        [CALC],
    )  # fmt: skip
    assert [type(m) for m in prompt] == [SystemMessage, HumanMessage, AIMessage, HumanMessage]
    assert "calculator: Arithmetic." in prompt[0].text and "CALL <tool>" in prompt[0].text
    assert prompt[2].text == 'CALL calculator {"expression": "6*7"}'
    assert prompt[3].text == "The tool answered:\n42"
