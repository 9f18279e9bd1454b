import pytest

from enclave_backend.chat_template import CHATML_TEMPLATE, ChatTemplate, ChatTemplateError


def test_chatml_renders_messages_and_generation_prompt() -> None:
    template = ChatTemplate(CHATML_TEMPLATE, bos_token="", eos_token="")
    text = template.render([{"role": "user", "content": "hi"}])
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_template_raise_exception_becomes_a_clear_error() -> None:
    template = ChatTemplate(
        "{% if messages[0]['role'] != 'user' %}{{ raise_exception('first must be user') }}"
        "{% endif %}ok",
        bos_token="",
        eos_token="",
    )
    with pytest.raises(ChatTemplateError, match="first must be user"):
        template.render([{"role": "assistant", "content": "x"}])


def test_template_runs_sandboxed() -> None:
    template = ChatTemplate("{{ ''.__class__.__mro__ }}", bos_token="", eos_token="")
    with pytest.raises(ChatTemplateError):
        template.render([{"role": "user", "content": "x"}])


def test_tojson_does_not_html_escape() -> None:
    template = ChatTemplate("{{ tools | tojson }}", bos_token="", eos_token="")
    assert template.render([], tools=[{"d": "<a & b>"}]) == '[{"d": "<a & b>"}]'
