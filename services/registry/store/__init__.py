"""Every SQL statement of the registry, and nothing else: `visibility` (which children a
principal may see), `reads` (children by id, pages, duplicate candidates), `writes`
(registrations, changes, external ids) and `audit` (history and the sealed audit log)."""

from services.registry.store.audit import (
    AuditVerdict,
    add_audit,
    list_audit,
    list_history,
    seal_audit,
    verify_audit,
)
from services.registry.store.reads import (
    AuditedRead,
    ChildFilter,
    duplicate_candidates,
    list_children,
    read_child,
    read_children,
)
from services.registry.store.visibility import Child, visibility_args, visible_to
from services.registry.store.writes import (
    Registration,
    Stored,
    claim_all_external_ids,
    claim_external_ids,
    external_id_owners,
    insert_registrations,
    record_change,
    update_child,
)

__all__ = [
    "AuditVerdict",
    "AuditedRead",
    "Child",
    "ChildFilter",
    "Registration",
    "Stored",
    "add_audit",
    "claim_all_external_ids",
    "claim_external_ids",
    "duplicate_candidates",
    "external_id_owners",
    "insert_registrations",
    "list_audit",
    "list_children",
    "list_history",
    "read_child",
    "read_children",
    "record_change",
    "seal_audit",
    "update_child",
    "verify_audit",
    "visibility_args",
    "visible_to",
]
