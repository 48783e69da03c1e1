"""Images, documents and generation parameters: encoded per provider, seen by the emulator on
the wire, and refused before anything is sent where a provider cannot take them."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from batchling import AsyncExperimentManager, GenerationParams, RawRequest, Status
from batchling.emulator import Emulator
from batchling.errors import InputError
from batchling.providers import PROVIDERS, registry
from batchling.providers.anthropic import emulator as anthropic_emulator
from batchling.providers.gemini import emulator as gemini_emulator
from batchling.providers.openai_compatible import emulator as protocol
from tests.helpers import read_jsonl

# A real 1x1 PNG and a minimal PDF.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
PDF = b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
PNG_B64 = base64.b64encode(PNG).decode()
PDF_B64 = base64.b64encode(PDF).decode()
PNG_DATA_URL = f"data:image/png;base64,{PNG_B64}"
PDF_DATA_URL = f"data:application/pdf;base64,{PDF_B64}"
IMAGE_URL = "https://example.com/cat.png"
PDF_URL = "https://example.com/paper.pdf"

MODELS = {name: registry.provider_info(name).demo_model for name in PROVIDERS}
ENDPOINTS = {p: registry.provider_info(p).default_endpoint for p in PROVIDERS}


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    image, pdf = tmp_path / "cat.png", tmp_path / "paper.pdf"
    image.write_bytes(PNG)
    pdf.write_bytes(PDF)
    return {"image": image, "pdf": pdf}


@pytest.fixture
async def manager(tmp_path: Path):  # type: ignore[no-untyped-def]
    async with AsyncExperimentManager(tmp_path / "db.sqlite") as manager:
        yield manager


def ask(part: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """A request whose user message is a question and one image or document part."""
    return {
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "What is this?"}, part]}
        ],
        **fields,
    }


def encode(provider: str, data: dict[str, Any], custom_id: str = "r1") -> dict[str, Any]:
    return registry.encoder(provider).encode(
        RawRequest.model_validate(data),
        custom_id=custom_id,
        model=MODELS[provider],
        endpoint=ENDPOINTS[provider],
    )


def contains(found: dict[str, Any], expected: dict[str, Any]) -> bool:
    return all(found.get(key) == value for key, value in expected.items())


def body_of(line: dict[str, Any]) -> dict[str, Any]:
    """Where a provider's line carries the request itself (Anthropic: params, Gemini: request)."""
    body: dict[str, Any] = next(line[key] for key in ("body", "params", "request") if key in line)
    return body


def media_of(provider: str, line: dict[str, Any]) -> dict[str, Any]:
    """The encoded image or document of an `ask()` request (the second part of the message)."""
    body = body_of(line)
    if "contents" in body:
        part: dict[str, Any] = body["contents"][0]["parts"][1]
        return part
    messages = [m for m in body["messages"] if m["role"] == "user"]
    part = messages[0]["content"][1]
    return part


# Each way of giving a part -> the media capability it needs (ProviderInfo.media, provider.toml).
KIND_MEDIA = {
    "image_url": "image_url",
    "image_data_url": "image_data",
    "image_path": "image_data",
    "image_data": "image_data",
    "pdf_path": "document_data",
    "pdf_data": "document_data",
    "pdf_url": "document_url",
}
# What each provider's batch line holds for each way of giving a part it takes.
OPENAI_STYLE_IMAGES = {
    "image_url": {"type": "image_url", "image_url": {"url": IMAGE_URL}},
    "image_data_url": {"type": "image_url", "image_url": {"url": PNG_DATA_URL}},
    "image_path": {"type": "image_url", "image_url": {"url": PNG_DATA_URL}},
    "image_data": {"type": "image_url", "image_url": {"url": PNG_DATA_URL}},
}
ANTHROPIC_BASE64_IMAGE = {
    "type": "image",
    "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64},
}
ANTHROPIC_PDF = {
    "type": "document",
    "source": {"type": "base64", "media_type": "application/pdf", "data": PDF_B64},
}
GEMINI_PNG = {"inlineData": {"mimeType": "image/png", "data": PNG_B64}}
GEMINI_PDF = {"inlineData": {"mimeType": "application/pdf", "data": PDF_B64}}
OPENAI_PDF = {"type": "file", "file": {"filename": "paper.pdf", "file_data": PDF_DATA_URL}}
EXPECTED: dict[str, dict[str, dict[str, Any]]] = {
    "openai": {
        **OPENAI_STYLE_IMAGES,
        "pdf_path": OPENAI_PDF,
        "pdf_data": {**OPENAI_PDF, "file": {**OPENAI_PDF["file"], "filename": "document.pdf"}},
    },
    "anthropic": {
        "image_url": {"type": "image", "source": {"type": "url", "url": IMAGE_URL}},
        "image_data_url": ANTHROPIC_BASE64_IMAGE,
        "image_path": ANTHROPIC_BASE64_IMAGE,
        "image_data": ANTHROPIC_BASE64_IMAGE,
        "pdf_path": ANTHROPIC_PDF,
        "pdf_data": ANTHROPIC_PDF,
        "pdf_url": {"type": "document", "source": {"type": "url", "url": PDF_URL}},
    },
    "gemini": {
        "image_data_url": GEMINI_PNG,
        "image_path": GEMINI_PNG,
        "image_data": GEMINI_PNG,
        "pdf_path": GEMINI_PDF,
        "pdf_data": GEMINI_PDF,
    },
    "groq": OPENAI_STYLE_IMAGES,
    "mistral": {
        **OPENAI_STYLE_IMAGES,
        "pdf_path": {
            "type": "document_url",
            "document_url": PDF_DATA_URL,
            "document_name": "paper.pdf",
        },
        "pdf_data": {"type": "document_url", "document_url": PDF_DATA_URL},
        "pdf_url": {"type": "document_url", "document_url": PDF_URL, "document_name": "paper.pdf"},
    },
    "together": OPENAI_STYLE_IMAGES,
    "azure": OPENAI_STYLE_IMAGES,
    "compatible": OPENAI_STYLE_IMAGES,
}


def part_for(kind: str, files: dict[str, Path]) -> dict[str, Any]:
    return {
        "image_url": {"type": "image", "url": IMAGE_URL},
        "image_data_url": {"type": "image", "url": PNG_DATA_URL},
        "image_path": {"type": "image", "path": str(files["image"])},
        "image_data": {"type": "image", "data": PNG_B64, "media_type": "image/png"},
        "pdf_path": {"type": "document", "path": str(files["pdf"])},
        "pdf_data": {"type": "document", "data": PDF_B64, "media_type": "application/pdf"},
        "pdf_url": {"type": "document", "url": PDF_URL},
    }[kind]


def takes(provider: str, kind: str) -> bool:
    return KIND_MEDIA[kind] in registry.provider_info(provider).media


def cases(accepted: bool) -> list[tuple[str, str]]:
    return [
        (provider, kind)
        for provider in PROVIDERS
        for kind in KIND_MEDIA
        if takes(provider, kind) == accepted
    ]


def test_the_expected_shapes_are_those_of_the_parts_each_provider_takes() -> None:
    assert {p: set(EXPECTED[p]) for p in PROVIDERS} == {
        p: {kind for kind in KIND_MEDIA if takes(p, kind)} for p in PROVIDERS
    }


# the public model


def test_a_media_part_needs_exactly_one_source_and_data_needs_its_type() -> None:
    with pytest.raises(ValueError, match="exactly one of 'url', 'path' or 'data', got url and"):
        RawRequest.model_validate(ask({"type": "image", "url": IMAGE_URL, "path": "x.png"}))
    with pytest.raises(ValueError, match="a document part needs exactly one"):
        RawRequest.model_validate(ask({"type": "document"}))
    with pytest.raises(ValueError, match="with 'data' needs its 'media_type'"):
        RawRequest.model_validate(ask({"type": "image", "data": PNG_B64}))
    with pytest.raises(ValueError, match="does not match any of the expected tags"):
        RawRequest.model_validate(ask({"type": "video", "url": IMAGE_URL}))


def test_a_remote_url_without_an_image_extension_is_taken_as_it_is() -> None:
    for provider in [p for p in PROVIDERS if takes(p, "image_url")]:
        line = encode(provider, ask({"type": "image", "url": "https://x/image.php?id=3"}))
        assert "https://x/image.php?id=3" in str(media_of(provider, line))


def test_parts_without_a_type_are_text_or_images() -> None:
    request = RawRequest.model_validate(
        {"messages": [{"role": "user", "content": [{"text": "hi"}, {"url": IMAGE_URL}]}]}
    )
    assert [part.type for part in request.messages[0].content] == ["text", "image"]  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"temperature": 2.5}, "less than or equal to 2"),
        ({"temperature": -0.1}, "greater than or equal to 0"),
        ({"top_p": 1.5}, "less than or equal to 1"),
        ({"max_tokens": 0}, "greater than 0"),
        ({"reasoning": "extreme"}, "'low', 'medium' or 'high'"),
        ({"reasoning": True}, "valid integer"),
        ({"reasoning": -1}, "greater than or equal to 0"),
        ({"stop": [""]}, "must not be empty"),
    ],
)
def test_generation_parameters_are_validated(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RawRequest.model_validate({"messages": [{"role": "user", "content": "hi"}], **fields})


def test_a_single_stop_string_becomes_a_list() -> None:
    request = RawRequest.model_validate(
        {"messages": [{"role": "user", "content": "hi"}], "stop": "END"}
    )
    assert request.stop == ["END"]


# encoding, per provider


@pytest.mark.parametrize(("provider", "kind"), cases(accepted=True))
def test_parts_are_encoded_in_the_providers_shape(
    provider: str, kind: str, files: dict[str, Path]
) -> None:
    line = encode(provider, ask(part_for(kind, files)))
    assert media_of(provider, line) == EXPECTED[provider][kind]


@pytest.mark.parametrize(("provider", "kind"), cases(accepted=False))
def test_parts_a_provider_cannot_take_are_refused_naming_the_request_and_part(
    provider: str, kind: str, files: dict[str, Path]
) -> None:
    with pytest.raises(InputError, match=r"Request 'r1', messages\[0\]\.content\[1\]: ") as info:
        encode(provider, ask(part_for(kind, files)))
    assert "URL" in str(info.value) or "document" in str(info.value)


def test_a_missing_local_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.png"
    for provider in PROVIDERS:
        with pytest.raises(InputError, match=rf"content\[1\]: image file not found: {missing}"):
            encode(provider, ask({"type": "image", "path": str(missing)}))


def test_a_file_of_unknown_type_needs_a_media_type(tmp_path: Path) -> None:
    blob = tmp_path / "scan.unknownext"
    blob.write_bytes(PNG)
    with pytest.raises(InputError, match=r"cannot tell the type.*Set 'media_type'"):
        encode("openai", ask({"type": "image", "path": str(blob)}))
    line = encode("openai", ask({"type": "image", "path": str(blob), "media_type": "image/png"}))
    assert media_of("openai", line)["image_url"]["url"] == PNG_DATA_URL


@pytest.mark.parametrize(
    ("provider", "part", "message"),
    [
        ("openai", {"type": "image", "url": "data:image/bmp;base64,Qk0="}, "type 'image/bmp'"),
        ("groq", {"type": "image", "url": "data:image/tiff;base64,Qk0="}, "type 'image/tiff'"),
        ("anthropic", {"type": "document", "url": "data:text/csv;base64,YSxi"}, "text/csv"),
        ("openai", {"type": "document", "url": "data:text/plain;base64,aGk="}, "text/plain"),
        ("openai", {"type": "image", "path": "PDF"}, "not an image"),
        ("openai", {"type": "image", "url": "ftp://host/cat.png"}, "neither an http"),
        ("openai", {"type": "image", "data": "not base64!", "media_type": "image/png"}, "base64"),
        ("mistral", {"type": "document", "url": "data:text/plain;base64,aGk="}, "text/plain"),
        ("openai", {"type": "image", "url": "data:;base64,aGk="}, "names no type"),
        ("groq", {"type": "document", "path": "PDF"}, "Groq batches take no document parts"),
        ("anthropic", {"type": "document", "url": "https://x/notes.txt"}, "text/plain"),
        ("openai", {"type": "image", "url": "https://x/scan.bmp"}, "image/bmp"),
    ],
)
def test_unsupported_types_and_malformed_sources_are_clear_errors(
    provider: str, part: dict[str, Any], message: str, files: dict[str, Path]
) -> None:
    if part.get("path") == "PDF":
        part = {**part, "path": str(files["pdf"])}
    with pytest.raises(InputError, match=message):
        encode(provider, ask(part))


def test_anthropic_takes_plain_text_documents_decoded() -> None:
    text = base64.b64encode(b"Line one.\nLine two.").decode()
    line = encode(
        "anthropic",
        ask({"type": "document", "data": text, "media_type": "text/plain", "filename": "notes"}),
    )
    assert media_of("anthropic", line) == {
        "type": "document",
        "source": {"type": "text", "media_type": "text/plain", "data": "Line one.\nLine two."},
        "title": "notes",
    }


def test_gemini_takes_urls_of_its_own_files_api() -> None:
    uri = "https://generativelanguage.googleapis.com/v1beta/files/abc123"
    line = encode("gemini", ask({"type": "document", "url": uri, "media_type": "application/pdf"}))
    assert media_of("gemini", line) == {"fileData": {"mimeType": "application/pdf", "fileUri": uri}}
    with pytest.raises(InputError, match="needs the type of the file"):
        encode("gemini", ask({"type": "document", "url": uri}))


@pytest.mark.parametrize("provider", [p for p in PROVIDERS if takes(p, "image_url")])
def test_images_in_assistant_messages_are_refused(provider: str) -> None:
    data = {
        "messages": [
            {"role": "user", "content": "draw"},
            {"role": "assistant", "content": [{"type": "image", "url": IMAGE_URL}]},
            {"role": "user", "content": "thanks"},
        ]
    }
    with pytest.raises(InputError, match="only in user messages"):
        encode(provider, data)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_images_in_system_messages_are_refused(provider: str) -> None:
    data = {
        "messages": [
            {"role": "system", "content": [{"type": "image", "url": PNG_DATA_URL}]},
            {"role": "user", "content": "hi"},
        ]
    }
    with pytest.raises(InputError, match="user message"):
        encode(provider, data)


# generation parameters, per provider

PARAMS = {"max_tokens": 300, "temperature": 0.5, "top_p": 0.9, "stop": ["END"], "seed": 7}


def test_parameters_are_mapped_per_provider() -> None:
    text = {"messages": [{"role": "user", "content": "hi"}], **PARAMS}
    openai_like = {"temperature": 0.5, "top_p": 0.9, "stop": ["END"], "seed": 7}
    assert contains(encode("openai", text)["body"], {**openai_like, "max_completion_tokens": 300})
    assert "max_tokens" not in encode("openai", text)["body"]
    for provider in ("groq", "together"):
        assert contains(encode(provider, text)["body"], {**openai_like, "max_tokens": 300})
    mistral = encode("mistral", text)["body"]
    assert contains(mistral, {"temperature": 0.5, "top_p": 0.9, "stop": ["END"], "random_seed": 7})
    assert "seed" not in mistral
    assert encode("gemini", text)["request"]["generationConfig"] == {
        "maxOutputTokens": 300,
        "temperature": 0.5,
        "topP": 0.9,
        "stopSequences": ["END"],
        "seed": 7,
    }
    no_seed = {k: v for k, v in text.items() if k != "seed"}
    assert contains(
        encode("anthropic", no_seed)["params"],
        {
            "max_tokens": 300,
            "temperature": 0.5,
            "top_p": 0.9,
            "stop_sequences": ["END"],
        },
    )
    with pytest.raises(InputError, match="Request 'r1': Anthropic has no 'seed'"):
        encode("anthropic", text)


@pytest.mark.parametrize("level", ["low", "medium", "high"])
def test_reasoning_levels_are_mapped_per_provider(level: str) -> None:
    text = {"messages": [{"role": "user", "content": "hi"}], "reasoning": level}
    for provider in ("openai", "groq", "mistral", "together"):
        assert encode(provider, text)["body"]["reasoning_effort"] == level
    config = encode("gemini", text)["request"]["generationConfig"]
    assert config == {"thinkingConfig": {"thinkingLevel": level.upper()}}
    params = encode("anthropic", text)["params"]
    budget = {"low": 1024, "medium": 4096, "high": 16384}[level]
    assert params["thinking"] == {"type": "enabled", "budget_tokens": budget}
    assert params["max_tokens"] == budget + 1024


def test_reasoning_budgets_go_where_a_provider_takes_them() -> None:
    text: dict[str, Any] = {"messages": [{"role": "user", "content": "hi"}], "reasoning": 2048}
    assert encode("gemini", text)["request"]["generationConfig"]["thinkingConfig"] == {
        "thinkingBudget": 2048
    }
    params = encode("anthropic", {**text, "max_tokens": 4000})["params"]
    assert params["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert params["max_tokens"] == 4000
    zero = {**text, "reasoning": 0}
    assert encode("gemini", zero)["request"]["generationConfig"]["thinkingConfig"] == {
        "thinkingBudget": 0
    }
    for provider, name in (
        ("openai", "OpenAI"),
        ("groq", "Groq"),
        ("mistral", "Mistral"),
        ("together", "Together"),
    ):
        with pytest.raises(InputError, match=rf"Request 'r1': {name} takes 'reasoning' as a level"):
            encode(provider, text)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"reasoning": 512}, "thinking budget starts at 1024"),
        ({"reasoning": 0}, "leave 'reasoning' out"),
        ({"reasoning": 2048, "max_tokens": 2048}, "max_tokens above the thinking budget"),
        ({"reasoning": "low", "temperature": 0.2}, "does not take a temperature"),
        ({"reasoning": "low", "top_p": 0.5}, "top_p from 0.95"),
    ],
)
def test_anthropic_thinking_rules_fail_before_sending(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError, match=message):
        encode("anthropic", {"messages": [{"role": "user", "content": "hi"}], **fields})


def test_request_settings_win_over_experiment_defaults() -> None:
    defaults = GenerationParams(temperature=0.1, max_tokens=50, reasoning="low")
    request = RawRequest.model_validate(
        {"messages": [{"role": "user", "content": "hi"}], "temperature": 0.9}
    )
    merged = request.with_defaults(defaults)
    assert (merged.temperature, merged.max_tokens, merged.reasoning) == (0.9, 50, "low")
    assert request.with_defaults(None) is request


# the emulator's own checks of what arrives


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"type": "image_url", "image_url": {"url": "data:image/bmp;base64,Qk0="}},
            "got 'image/bmp'",
        ),
        ({"type": "image_url", "image_url": {"url": "data:image/png;base64,%%%"}}, "malformed"),
        ({"type": "image", "source": {}}, "Supported values are"),
        ({"type": "file", "file": {"file_data": PNG_DATA_URL}}, "application/pdf"),
    ],
)
def test_emulator_refuses_malformed_openai_parts(body: dict[str, Any], message: str) -> None:
    request = {"messages": [{"role": "user", "content": [body]}]}
    assert message in str(protocol.chat_parts_problem(request, files=True))


def test_emulator_refuses_files_where_the_provider_takes_none() -> None:
    request = {"messages": [{"role": "user", "content": [OPENAI_PDF]}]}
    assert protocol.chat_parts_problem(request, files=True) is None
    assert "Supported values" in str(protocol.chat_parts_problem(request, files=False))


def test_emulator_refuses_malformed_anthropic_blocks_and_thinking() -> None:
    def problem(block: dict[str, Any], **params: Any) -> str | None:
        return anthropic_emulator.parts_problem(
            {"max_tokens": 100, "messages": [{"role": "user", "content": [block]}], **params}
        )

    assert problem(ANTHROPIC_BASE64_IMAGE) is None
    bmp = {"type": "image", "source": {**ANTHROPIC_BASE64_IMAGE["source"], "media_type": "x/y"}}
    assert "media_type: Input should be" in str(problem(bmp))
    bad = {"type": "document", "source": {**ANTHROPIC_PDF["source"], "data": "@@"}}
    assert "not valid base64" in str(problem(bad))
    thinking = {"type": "enabled", "budget_tokens": 2048}
    text = {"type": "text", "text": "hi"}
    assert "greater than `thinking" in str(problem(text, thinking=thinking))
    assert "temperature" in str(problem(text, thinking=thinking, max_tokens=4000, temperature=0))


def test_emulator_refuses_malformed_gemini_parts() -> None:
    def problem(part: dict[str, Any], **config: Any) -> str | None:
        request = {"contents": [{"role": "user", "parts": [part]}], "generationConfig": config}
        return gemini_emulator.parts_problem(request)

    assert problem(GEMINI_PNG) is None
    assert "Unsupported MIME type: image/bmp" in str(
        problem({"inlineData": {"mimeType": "image/bmp", "data": PNG_B64}})
    )
    assert "Base64 decoding failed" in str(
        problem({"inlineData": {"mimeType": "image/png", "data": "@@"}})
    )
    assert "file uri" in str(problem({"fileData": {"mimeType": "image/png", "fileUri": IMAGE_URL}}))
    both = {"thinkingBudget": 10, "thinkingLevel": "LOW"}
    assert "only one of" in str(problem({"text": "hi"}, thinkingConfig=both))


# end to end, through each SDK and the emulator


async def wire_lines(
    manager: AsyncExperimentManager, emulator: Emulator, name: str
) -> list[dict[str, Any]]:
    """The lines the emulator received for an experiment's batches."""
    lines: list[dict[str, Any]] = []
    for batch in await manager.list_batches(name):
        assert batch.batch_id is not None
        lines += emulator.state.batches[batch.batch_id.removeprefix("batches/")].lines
    return lines


def key_of(provider: str, line: dict[str, Any]) -> str:
    return str(line.get("key") or line.get("custom_id") or line.get("metadata", {}).get("key"))


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_parts_arrive_in_the_providers_shape_and_are_answered(
    manager: AsyncExperimentManager,
    emulator: Emulator,
    provider: str,
    files: dict[str, Path],
) -> None:
    kinds = [kind for kind in KIND_MEDIA if takes(provider, kind)]
    requests = [
        {**ask(part_for(kind, files), reasoning="low"), "id": kind.replace("_", "-")}
        for kind in kinds
    ]
    name = f"mm-{provider}"
    await manager.create_experiment(
        name, model=MODELS[provider], provider=provider, raw_requests=requests
    )
    await manager.start_experiment(name)
    finished = await manager.wait(name, poll_interval=0.02)
    assert finished.status == Status.COMPLETED
    results = {r.custom_id: r for r in await manager.get_results(name)}
    assert all(r.ok for r in results.values()), [r.error for r in results.values()]
    received = {key_of(provider, line): line for line in await wire_lines(manager, emulator, name)}
    assert len(received) == len(kinds)
    for kind in kinds:
        line = received[kind.replace("_", "-")]
        assert media_of(provider, line) == EXPECTED[provider][kind]


async def test_the_emulator_fails_a_request_whose_part_the_provider_refuses(
    manager: AsyncExperimentManager, emulator: Emulator
) -> None:
    # batchling leaves Gemini's inline types to Gemini; the emulator answers as Gemini would.
    bmp = {"type": "image", "data": PNG_B64, "media_type": "image/bmp"}
    requests = [
        {**ask(bmp), "id": "bmp"},
        {**ask({"type": "image", "url": PNG_DATA_URL}), "id": "png"},
    ]
    await manager.create_experiment(
        "bmp", model="gemini-x", provider="gemini", raw_requests=requests
    )
    await manager.start_experiment("bmp")
    await manager.wait("bmp", poll_interval=0.02)
    results = {r.custom_id: r for r in await manager.get_results("bmp")}
    assert results["png"].ok
    assert results["bmp"].status == "failed" and results["bmp"].error is not None
    assert "Unsupported MIME type: image/bmp" in results["bmp"].error.message


@pytest.mark.parametrize(("provider", "kind"), [("groq", "pdf_path"), ("gemini", "image_url")])
async def test_unsupported_parts_fail_at_create_and_nothing_is_sent(
    manager: AsyncExperimentManager,
    emulator: Emulator,
    provider: str,
    kind: str,
    files: dict[str, Path],
) -> None:
    calls_before = sum(emulator.state.calls.values())
    batches_before = len(emulator.state.batches)
    requests = [ask({"type": "text", "text": "fine"}), {**ask(part_for(kind, files)), "id": "bad"}]
    with pytest.raises(InputError, match=r"Request 'bad', messages\[0\]\.content\[1\]"):
        await manager.create_experiment(
            "refused", model=MODELS[provider], provider=provider, raw_requests=requests
        )
    assert await manager.list_experiments() == []
    assert sum(emulator.state.calls.values()) == calls_before
    assert len(emulator.state.batches) == batches_before


async def test_experiment_defaults_fill_unset_parameters_on_the_wire(
    manager: AsyncExperimentManager, emulator: Emulator
) -> None:
    requests = [
        {"id": "plain", "messages": [{"role": "user", "content": "hi"}]},
        {"id": "own", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.9},
    ]
    experiment = await manager.create_experiment(
        "defaults",
        model="gpt-4o-mini",
        raw_requests=requests,
        generation={"temperature": 0.2, "max_tokens": 40, "reasoning": "high"},
    )
    lines = {line["custom_id"]: line["body"] for line in read_jsonl(experiment.processed_file_path)}
    assert contains(
        lines["plain"],
        {
            "temperature": 0.2,
            "max_completion_tokens": 40,
            "reasoning_effort": "high",
        },
    )
    assert lines["own"]["temperature"] == 0.9 and lines["own"]["reasoning_effort"] == "high"
    # A re-encode (a model change) keeps them: the stored requests hold the merged settings.
    await manager.update_experiment("defaults", model="gpt-4.1-mini")
    again = read_jsonl((await manager.retrieve("defaults")).processed_file_path)
    assert again[0]["body"]["temperature"] == 0.2 and again[0]["body"]["model"] == "gpt-4.1-mini"
    await manager.start_experiment("defaults")
    await manager.wait("defaults", poll_interval=0.02)
    received = await wire_lines(manager, emulator, "defaults")
    assert {line["body"]["reasoning_effort"] for line in received} == {"high"}


async def test_invalid_experiment_defaults_are_a_clear_error(
    manager: AsyncExperimentManager,
) -> None:
    with pytest.raises(InputError, match="generation settings are not valid: temperature"):
        await manager.create_experiment(
            "bad-defaults",
            model="m",
            raw_requests=[{"messages": [{"role": "user", "content": "hi"}]}],
            generation={"temperature": 9},
        )
    with pytest.raises(InputError, match="reasoning"):
        await manager.create_experiment(
            "bad-defaults",
            model="m",
            raw_requests=[{"messages": [{"role": "user", "content": "hi"}]}],
            generation={"reasoning": 100},
        )


def test_cli_create_takes_generation_settings(emulator: Emulator, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from batchling.cli import cli

    raw = tmp_path / "requests.jsonl"
    raw.write_text('{"id": "a", "messages": [{"role": "user", "content": "hi"}]}\n')
    processed = tmp_path / "processed.jsonl"
    args = ["--db", str(tmp_path / "db.sqlite"), "create", "--name", "cli-params"]
    args += ["--model", "gemini-x", "--provider", "gemini", "--raw-file-path", str(raw)]
    args += ["--processed-file-path", str(processed)]
    args += ["--set", "temperature=0.3", "--set", "reasoning=2048", "--set", "stop=END"]
    result = CliRunner().invoke(cli, args, obj={})
    assert result.exit_code == 0, result.output
    config = read_jsonl(processed)[0]["request"]["generationConfig"]
    assert config == {
        "temperature": 0.3,
        "stopSequences": ["END"],
        "thinkingConfig": {"thinkingBudget": 2048},
    }
    bad = CliRunner().invoke(cli, [*args[:4], "cli-bad", *args[5:-6], "--set", "oops"], obj={})
    assert bad.exit_code != 0 and "is not NAME=VALUE" in bad.output
