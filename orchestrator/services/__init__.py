"""Services declared by OpenAPI 3 documents in the workflows directory
(``services/<name>.openapi.yaml`` or ``.json``): loaded, checked against the directory, and
installed into the action catalogue as ``<name>.<operationId>`` (docs/openapi-services.md).
The mock that serves them is :mod:`mock_services._declared`."""

from orchestrator.services._document import Document, Operation, Response, json_path
from orchestrator.services._load import (
    SERVICES_FOLDER,
    DeclaredOperation,
    DeclaredService,
    install,
    load_and_install,
    load_service,
    load_services,
    service_files,
)

__all__ = [
    "SERVICES_FOLDER",
    "DeclaredOperation",
    "DeclaredService",
    "Document",
    "Operation",
    "Response",
    "install",
    "json_path",
    "load_and_install",
    "load_service",
    "load_services",
    "service_files",
]
