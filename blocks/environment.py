"""An environment as a run holds it, read from its `Flowmasters Environment` block.

A run reads the block once (`load_environment`) and hands the `Environment` to every task; a task
asks it for its target's runtime (`connect`), which reads nothing more from the server.

The document is read here rather than through `FlowmastersEnvironment.load`: that class names
every target's block class, and importing it would import every target's SDK (prefect_aws and
boto3 on a Docker-host run: about 3 s of every run's start). The document says which block type
its target is, so only that kind's modules are imported.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from prefect.blocks.core import Block
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import BlockDocument
from prefect.exceptions import ObjectNotFound
from pydantic import BaseModel, ConfigDict, SerializeAsAny, ValidationError

from domain.environment import EnvironmentSpec
from domain.errors import ReleaseError
from targets import registry
from targets.base import Target

ENVIRONMENT_BLOCK = "flowmasters-environment"  # FlowmastersEnvironment's block type slug


class Environment(BaseModel):
    """An environment as a run holds it: what is released (`spec`) and where (`target`).

    Plain data, passed to the tasks as a parameter. Its target block's secrets stay SecretStr
    (masked wherever it is serialised, in a cache key say) until a runtime unwraps them.
    """

    model_config = ConfigDict(frozen=True)

    spec: EnvironmentSpec
    target: SerializeAsAny[Block]  # one kind's target block (see targets.registry.KINDS)

    @property
    def name(self) -> str:
        return self.spec.name

    def connect(self) -> Target:
        return registry.connect(self.target, self.spec)


def load_environment(name: str) -> Environment:
    """Read an environment's block (one read from the server), or say which environments exist
    and how to add one."""
    with get_client(sync_client=True) as client:
        try:
            document = client.read_block_document_by_name(
                name, block_type_slug=ENVIRONMENT_BLOCK, include_secrets=True
            )
        except ObjectNotFound:
            raise ReleaseError(
                f"unknown environment '{name}': no 'Flowmasters Environment' block of that name "
                f"(known: {', '.join(known_environments()) or 'none'}). Describe it in "
                f"deployments/environments/{name}.yaml and run "
                f"`python -m deployments.register {name}`."
            ) from None
    return environment_of(name, document)


def environment_of(name: str, document: BlockDocument) -> Environment:
    """The `Environment` a block document describes, its target validated by its own kind."""
    data: dict[str, Any] = dict(document.data)
    target_data = data.pop("target", None)
    # A saved target block is a reference (its type in the reference); an unsaved one is inline,
    # its type slug in its data. Either way the slug picks the one kind to import. (Inline blocks
    # cost more: Prefect resolves an inline slug by importing every installed collection, AWS's
    # too. `deployments.register` saves each nested block, so its environments never pay that.)
    reference = document.block_document_references.get("target", {}).get("block_document")
    slug = (
        reference["block_type"]["slug"] if reference else (target_data or {}).get("block_type_slug")
    )
    if not isinstance(target_data, dict) or slug is None:
        raise ReleaseError(
            f"environment '{name}': its block names no target block. Describe the target in "
            f"deployments/environments/{name}.yaml and run `python -m deployments.register {name}`."
        )
    try:
        target = registry.kind_of_block(slug).block.model_validate(target_data)
        spec = EnvironmentSpec.model_validate({**data, "name": name})
    except ValidationError as exc:
        raise ReleaseError(
            f"environment '{name}': its block does not hold a valid environment "
            f"({invalid_fields(exc)}). Describe it in deployments/environments/{name}.yaml and "
            f"run `python -m deployments.register {name}`; nothing was changed."
        ) from None
    if reference:
        _name_saved_blocks(target, reference)
    return Environment(spec=spec, target=target)


def invalid_fields(exc: ValidationError) -> str:
    """Where and what, never the value: a block's fields hold passwords and keys."""
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or 'the block'}: {error['msg']}"
        for error in exc.errors(include_input=False, include_url=False)
    )


def _name_saved_blocks(block: Block, reference: dict[str, Any]) -> None:
    """Give `block` and its nested blocks the ids and names `Block.load` would have given them."""
    block._block_document_id = UUID(str(reference["id"]))
    block._block_document_name = reference["name"]
    block._is_anonymous = reference["is_anonymous"]
    block._define_metadata_on_nested_blocks(reference["block_document_references"])


def known_environments() -> list[str]:
    with get_client(sync_client=True) as client:
        docs = client.read_block_documents_by_type(
            block_type_slug=ENVIRONMENT_BLOCK, include_secrets=False
        )
    return sorted(d.name for d in docs if d.name)
