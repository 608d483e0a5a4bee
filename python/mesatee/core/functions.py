"""The built-in functions' declarations, as the enclave states them (``ecall_functions``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mesatee.core import canonical
from mesatee.errors import FormatError


@dataclass(frozen=True)
class ArgumentDeclaration:
    name: str
    type: str  # string, int, float, bool, bytes
    required: bool
    default: Any = None
    min: float | None = None  # numbers: value; strings and bytes: length
    max: float | None = None
    choices: tuple[str, ...] = ()
    doc: str = ""


@dataclass(frozen=True)
class SlotDeclaration:
    name: str
    optional: bool
    doc: str = ""


@dataclass(frozen=True)
class FunctionDeclaration:
    name: str
    version: int
    doc: str
    arguments: tuple[ArgumentDeclaration, ...]
    inputs: tuple[SlotDeclaration, ...]
    outputs: tuple[SlotDeclaration, ...]


def parse_declarations(encoded: bytes) -> dict[str, FunctionDeclaration]:
    """Declarations by function name, from the enclave's canonical encoding."""
    try:
        functions = {}
        for fn in canonical.decode(encoded, max_size=1 << 20):
            arguments = tuple(
                ArgumentDeclaration(
                    name=a["name"],
                    type=a["type"],
                    required=a["required"],
                    default=a.get("default"),
                    min=a.get("min"),
                    max=a.get("max"),
                    choices=tuple(a.get("choices", ())),
                    doc=a["doc"],
                )
                for a in fn["arguments"]
            )
            slots = {
                k: tuple(SlotDeclaration(s["name"], s["optional"], s["doc"]) for s in fn[k])
                for k in ("inputs", "outputs")
            }
            functions[fn["name"]] = FunctionDeclaration(
                fn["name"], fn["version"], fn["doc"], arguments, slots["inputs"], slots["outputs"]
            )
        return functions
    except (KeyError, TypeError) as exc:
        raise FormatError(f"function declarations are malformed: {exc!r}") from exc
