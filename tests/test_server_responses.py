"""OpenAI's Responses API on kit serve, through OpenAI's own client (notebook 07).

client.responses.create / .stream / .parse against a real `kit serve` on
loopback with the real starter model; the same answers as the chat route
gives for the same conversation. Also: tool schemas with $defs (what
openai.pydantic_function_tool makes for a nested model).
"""
import json

import openai
import pytest
from pydantic import BaseModel

from kit.server import start

MODEL = "smollm2:135m"
T1 = dict(n_threads=1)  # other test runs share these 2 cores
QUESTION = "What is the capital of France?"
BRIEF = "You answer in one short sentence."


@pytest.fixture(scope="module")
def server():
    with start([MODEL], n_ctx=1024, quiet=True, parallel=1, **T1) as srv:
        yield srv


@pytest.fixture(scope="module")
def oai(server):
    return openai.OpenAI(base_url=server.openai_url, api_key="unused", max_retries=0,
                         timeout=300)


def chat(oai, messages, **kw):
    return oai.chat.completions.create(model=MODEL, messages=messages, temperature=0,
                                       **kw)


def test_a_string_input_answers_as_the_chat_route_does(oai):
    r = oai.responses.create(model=MODEL, input=QUESTION, instructions=BRIEF,
                             temperature=0, max_output_tokens=40)
    want = chat(oai, [{"role": "system", "content": BRIEF},
                      {"role": "user", "content": QUESTION}], max_tokens=40)
    assert r.object == "response" and r.id.startswith("resp_") and r.model == MODEL
    assert r.output_text == want.choices[0].message.content and "Paris" in r.output_text
    assert r.output[0].type == "message" and r.output[0].role == "assistant"
    assert r.usage.input_tokens == want.usage.prompt_tokens
    assert r.usage.output_tokens == want.usage.completion_tokens
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens
    assert r.status == "completed" and r.instructions == BRIEF and r.store is False


def test_an_item_list_with_every_kind_of_message(oai):
    items = [{"role": "developer", "content": BRIEF},
             {"role": "user", "content": [{"type": "input_text", "text": "Hello!"}]},
             {"type": "message", "role": "assistant", "content": [
                 {"type": "output_text", "text": "Hello! How can I help?"}]},
             {"role": "user", "content": QUESTION}]
    r = oai.responses.create(model=MODEL, input=items, temperature=0,
                             max_output_tokens=30)
    want = chat(oai, [{"role": "system", "content": BRIEF},
                      {"role": "user", "content": "Hello!"},
                      {"role": "assistant", "content": "Hello! How can I help?"},
                      {"role": "user", "content": QUESTION}], max_tokens=30)
    assert r.output_text == want.choices[0].message.content
    assert r.usage.input_tokens == want.usage.prompt_tokens


def test_max_output_tokens_cuts_the_answer_and_says_so(oai):
    r = oai.responses.create(model=MODEL, input="Tell me a long story about a dragon.",
                             max_output_tokens=6, temperature=0.7, top_p=0.9)
    assert r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens"
    assert r.usage.output_tokens == 6 and r.output_text
    assert r.temperature == 0.7 and r.top_p == 0.9


def test_streamed_events_in_openai_order(oai):
    kw = dict(model=MODEL, input=QUESTION, instructions=BRIEF, temperature=0,
              max_output_tokens=40)
    plain = oai.responses.create(**kw)
    events = list(oai.responses.create(stream=True, **kw))
    kinds = [e.type for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress",
                         "response.output_item.added", "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done",
                          "response.output_item.done", "response.completed"]
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert len(deltas) > 3 and "".join(deltas) == plain.output_text
    assert [e.sequence_number for e in events] == list(range(len(events)))
    done = next(e for e in events if e.type == "response.output_text.done")
    assert done.text == plain.output_text
    final = events[-1].response
    assert final.output_text == plain.output_text and final.usage.output_tokens > 0
    assert events[0].response.status == "in_progress" and final.status == "completed"


def test_the_stream_helper_gives_the_final_response(oai):
    with oai.responses.stream(model=MODEL, input=QUESTION, instructions=BRIEF,
                              temperature=0, max_output_tokens=40) as stream:
        pieces = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(pieces) == final.output_text and "Paris" in final.output_text


class Author(BaseModel):
    name: str
    born: int


class Book(BaseModel):
    title: str
    author: Author  # a nested model: its schema sits under $defs
    year: int


def test_parse_returns_the_pydantic_model(oai):
    r = oai.responses.parse(
        model=MODEL, input="Give the catalogue record of the novel Emma by Jane "
        "Austen (born 1775), published in 1815.", text_format=Book, temperature=0,
        max_output_tokens=120)
    book = r.output_parsed
    assert isinstance(book, Book) and isinstance(book.author, Author)
    assert book.title and book.author.name
    assert json.loads(r.output_text) == book.model_dump()


WEATHER = {"type": "function", "name": "get_weather",
           "description": "The weather now in a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                          "required": ["city"], "additionalProperties": False},
           "strict": True}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


def test_function_tools_round_trip(oai):
    first = oai.responses.create(model=MODEL, input=ASK, tools=[WEATHER],
                                 tool_choice="required", temperature=0,
                                 max_output_tokens=60)
    calls = [o for o in first.output if o.type == "function_call"]
    assert calls and calls[0].name == "get_weather" and calls[0].call_id
    assert set(json.loads(calls[0].arguments)) == {"city"}
    assert first.output_text == ""  # a call, not words
    result = {"type": "function_call_output", "call_id": calls[0].call_id,
              "output": "18 degrees and sunny"}
    second = oai.responses.create(model=MODEL, input=ASK + first.output + [result],
                                  temperature=0, max_output_tokens=40)
    assert second.output_text and second.output[0].type == "message"
    # the call and its result are in the prompt the model read
    without = oai.responses.create(model=MODEL, input=ASK, temperature=0,
                                   max_output_tokens=40)
    assert second.usage.input_tokens > without.usage.input_tokens + 10


def test_streamed_function_call_events(oai):
    events = list(oai.responses.create(model=MODEL, input=ASK, tools=[WEATHER],
                                       tool_choice="required", temperature=0,
                                       max_output_tokens=60, stream=True))
    kinds = [e.type for e in events]
    assert "response.function_call_arguments.done" in kinds
    added = next(e for e in events if e.type == "response.output_item.added")
    assert added.item.type == "function_call" and added.item.name == "get_weather"
    done = next(e for e in events if e.type == "response.function_call_arguments.done")
    assert json.loads(done.arguments)["city"]
    assert events[-1].type == "response.completed"
    assert events[-1].response.output[0].type == "function_call"


@pytest.mark.parametrize("kw,words", [
    (dict(store=True), "keeps no responses"),
    (dict(previous_response_id="resp_123"), "Send the whole conversation as input"),
    (dict(tools=[{"type": "web_search"}]), "'web_search' are not supported"),
    (dict(input=[{"role": "user", "content": [
        {"type": "input_image", "image_url": "https://example.org/a.png"}]}]),
     "text only"),
    (dict(reasoning={"effort": "high"}), f'"{MODEL}" does not support reasoning'),
])
def test_what_it_cannot_do_is_a_clear_400(oai, kw, words):
    with pytest.raises(openai.BadRequestError) as err:
        oai.responses.create(**{"model": MODEL, "input": QUESTION, **kw})
    assert words in err.value.message


def test_stored_responses_are_not_found(oai):
    with pytest.raises(openai.NotFoundError) as err:
        oai.responses.retrieve("resp_123")
    assert "keeps no responses" in err.value.message


# ---- tool schemas with $defs (item 3 of the same issue) ---------------------

class Shelf(BaseModel):
    room: str
    number: int


class ShelveBook(BaseModel):
    """Put a book on a shelf."""
    title: str
    shelf: Shelf


def test_a_pydantic_tool_with_defs_is_offered_and_called(oai):
    tool = openai.pydantic_function_tool(ShelveBook)
    assert "$defs" in json.dumps(tool)  # what the client really sends
    r = chat(oai, [{"role": "user", "content": "Shelve the book Emma in the reading "
                    "room, shelf 3."}], tools=[tool], tool_choice="required",
             max_tokens=80)
    call = r.choices[0].message.tool_calls[0]
    assert call.function.name == "ShelveBook"
    args = ShelveBook.model_validate_json(call.function.arguments)
    assert isinstance(args.shelf, Shelf)


def test_a_recursive_tool_schema_is_refused_by_name(oai):
    tree = {"type": "function", "function": {"name": "plant", "parameters": {
        "type": "object", "properties": {"root": {"$ref": "#/$defs/Node"}},
        "$defs": {"Node": {"type": "object", "properties": {
            "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}}}}}}}}
    with pytest.raises(openai.BadRequestError) as err:
        chat(oai, [{"role": "user", "content": "Hi"}], tools=[tree], max_tokens=4)
    assert "'plant'" in err.value.message and "recursive" in err.value.message


def test_inline_refs_writes_out_local_definitions():
    from kit.engines.tool_schema import inline_refs
    from kit.errors import BadTool

    schema = {"type": "object", "properties": {
        "a": {"$ref": "#/$defs/A", "description": "the first"},
        "b": {"type": "array", "items": {"$ref": "#/definitions/a~1b"}}},
        "$defs": {"A": {"type": "integer"}},
        "definitions": {"a/b": {"type": "string", "enum": ["x", "y"]}}}
    assert inline_refs(schema) == {"type": "object", "properties": {
        "a": {"type": "integer", "description": "the first"},
        "b": {"type": "array", "items": {"type": "string", "enum": ["x", "y"]}}}}
    with pytest.raises(BadTool, match="outside the schema"):
        inline_refs({"properties": {"a": {"$ref": "https://example.org/a.json"}}})
    with pytest.raises(BadTool, match="does not define"):
        inline_refs({"properties": {"a": {"$ref": "#/$defs/Missing"}}})
