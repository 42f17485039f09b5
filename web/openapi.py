"""The OpenAPI 3.1 description of ``/api/v1``, written by hand next to the code it describes.

A test validates it with openapi-spec-validator and checks that every API route is in it.
"""

from __future__ import annotations

from typing import Any

OPENAPI_VERSION = "3.1.0"


def _problem(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}


def _job(description: str, schema: str = "Job") -> dict[str, Any]:
    return {"description": description,
            "headers": {"Location": {"schema": {"type": "string"}, "description": "where to poll the job"}},
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}}


COMMON_ERRORS = {"401": {"$ref": "#/components/responses/Unauthorized"},
                 "429": {"$ref": "#/components/responses/TooManyRequests"}}
ID = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}
WAIT = {"name": "wait", "in": "query", "required": False,
        "description": "seconds to wait for the job to end before answering (capped by the server)",
        "schema": {"type": "number", "minimum": 0}}
IDEMPOTENCY = {"name": "Idempotency-Key", "in": "header", "required": False,
               "description": "a repeated submission with the same key returns the first job",
               "schema": {"type": "string", "minLength": 1, "maxLength": 128}}
CALLBACK_URL = {"type": "string", "maxLength": 2000, "anyOf": [{"format": "uri"}, {"const": ""}],
                "description": "https URL to POST the job to when it ends, signed with the API key's webhook "
                               "secret (see the jobEnded callback and docs/webhooks.md); empty means none"}
# What a submission with callback_url receives once its job has ended.
CALLBACKS = {"jobEnded": {"{$request.body#/callback_url}": {"post": {
    "summary": "the job ended (succeeded, failed or cancelled)",
    "description": "Sent once the job is final, retried with exponential backoff until the receiver answers "
                   "2xx (6 attempts over about an hour by default). Delivery is at least once: deduplicate on "
                   "Veriframe-Event-Id. Verify Veriframe-Signature over the raw body before trusting it.",
    "parameters": [
        {"name": "Veriframe-Signature", "in": "header", "required": True,
         "description": "t=<unix time>,v1=<hex HMAC-SHA256 of '<t>.<raw body>' under the key's webhook secret>",
         "schema": {"type": "string", "pattern": "^t=[0-9]+,v1=[0-9a-f]{64}"}},
        {"name": "Veriframe-Event-Id", "in": "header", "required": True,
         "description": "the event's id, the same on every attempt", "schema": {"type": "string"}}],
    "requestBody": {"required": True, "content": {"application/json": {"schema": {
        "$ref": "#/components/schemas/WebhookEvent"}}}},
    "responses": {"2XX": {"description": "received; anything else (or no answer) is retried"}},
}}}}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` that also allows null (a JSON body's optional field, which null leaves at its default)."""
    return {**schema, "type": [schema["type"], "null"]}


def _upload_body(extra: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["file"],
        "properties": {"file": {"type": "string", "contentMediaType": "application/octet-stream"},
                       "callback_url": CALLBACK_URL, **extra}}}}}


def _submit(summary: str, scope: str, body: dict[str, Any], result: str = "Job") -> dict[str, Any]:
    return {
        "summary": summary, "security": [{"apiKey": [scope]}], "parameters": [WAIT, IDEMPOTENCY],
        "requestBody": body,
        "responses": {
            "200": _job("the job ended within 'wait'", result),
            "202": _job("the job is queued or running; poll Location", result),
            "400": _problem("invalid parameters"), "403": {"$ref": "#/components/responses/Forbidden"},
            "413": _problem("the upload is over a size, resolution or duration limit"),
            "415": _problem("the upload is not media veriframe reads"),
            "422": _problem("callback_url is not one veriframe will call, or the key has no webhook secret"),
            **COMMON_ERRORS,
        },
        "callbacks": CALLBACKS,
    }


def _read(summary: str, schema: str = "Job") -> dict[str, Any]:
    return {"summary": summary, "security": [{"apiKey": []}], "parameters": [ID],
            "responses": {"200": {"description": "the job", "content": {"application/json": {
                "schema": {"$ref": f"#/components/schemas/{schema}"}}}},
                "404": {"$ref": "#/components/responses/NotFound"}, **COMMON_ERRORS}}


def _binary(summary: str, media_type: str) -> dict[str, Any]:
    return {"description": summary, "content": {media_type: {"schema": {"type": "string",
                                                                       "contentMediaType": media_type}}}}


def document(batch_max_files: int = 20) -> dict[str, Any]:
    """The document; ``batch_max_files`` is the instance's ``api_batch_max_files``."""
    from . import package_version

    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "veriframe API", "version": package_version(),
            "description": "Verify clips (Content Credentials, watermark, AI-origin detector), sign them, and "
                           "generate credentialed clips. Jobs are asynchronous: submit, then poll.",
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "servers": [{"url": "/api/v1"}],
        "security": [{"apiKey": []}],
        "paths": {
            "/health": {"get": {"summary": "liveness", "security": [], "responses": {"200": {
                "description": "ok", "content": {"application/json": {"schema": {"type": "object"}}}}}}},
            "/openapi.json": {"get": {"summary": "this document", "security": [], "responses": {"200": {
                "description": "OpenAPI 3.1", "content": {"application/json": {"schema": {"type": "object"}}}}}}},
            "/verifications": {"post": _submit("verify a clip or still", "verify", _upload_body({}), "Verification")},
            "/verifications/batch": {"post": {
                "summary": "verify several clips at once: one job per file; unreadable files get their own problem",
                "security": [{"apiKey": ["verify"]}],
                "parameters": [{**IDEMPOTENCY, "description": "each file's job gets '<key>:<index>'",
                                "schema": {"type": "string", "minLength": 1, "maxLength": 120}}],
                "requestBody": {"required": True, "content": {"multipart/form-data": {
                    "schema": {"type": "object", "required": ["file"], "properties": {
                        "file": {"type": "array", "minItems": 1, "maxItems": batch_max_files,
                                 "description": "one part per clip (at most the instance's api_batch_max_files)",
                                 "items": {"type": "string", "contentMediaType": "application/octet-stream"}},
                        "callback_url": CALLBACK_URL}},
                    "encoding": {"file": {"contentType": "application/octet-stream"}}}}},
                "responses": {
                    "202": {"description": "the batch was taken: see each item for its job or its problem",
                            "content": {"application/json": {"schema": {
                                "$ref": "#/components/schemas/BatchResult"}}}},
                    "400": _problem("no file, or more than the batch limit"),
                    "403": {"$ref": "#/components/responses/Forbidden"},
                    "413": _problem("the request is over the upload limit"),
                    "422": _problem("callback_url is not one veriframe will call"), **COMMON_ERRORS},
                "callbacks": CALLBACKS}},
            "/verifications/{job_id}": {"get": _read("a verification, with its report once it succeeded",
                                                     "Verification")},
            "/signatures": {"post": _submit("watermark and sign a creator's clip", "sign", _upload_body({
                "source": {"type": "string", "enum": ["capture", "edit", "generated"], "default": "capture"},
                "title": {"type": "string", "maxLength": 200}, "author": {"type": "string", "maxLength": 200},
                "watermark": {"type": "boolean", "default": True}}))},
            "/signatures/{job_id}": {"get": _read("a signing job")},
            "/generations": {"post": _submit("generate a clip with Content Credentials", "generate", {
                "required": True, "content": {"application/json": {"schema": {
                    "$ref": "#/components/schemas/GenerationRequest"}}}})},
            "/generations/{job_id}": {"get": _read("a generation job")},
            "/jobs": {"get": {
                "summary": "the caller's jobs, newest first", "security": [{"apiKey": []}],
                "parameters": [
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100,
                                                                "default": 20}},
                    {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": 10**9,
                                                                 "default": 0}},
                    {"name": "kind", "in": "query", "description": "left out or empty: every kind",
                     "schema": {"type": "string", "enum": ["verify", "sign", "generate", ""]}},
                    {"name": "state", "in": "query", "description": "left out or empty: every state",
                     "schema": {"type": "string", "enum": [
                         "queued", "running", "succeeded", "failed", "cancelled", ""]}}],
                "responses": {"200": {"description": "a page of jobs", "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/JobPage"}}}},
                    "400": _problem("invalid paging or filter"), **COMMON_ERRORS}}},
            "/jobs/{job_id}": {
                "get": _read("any of the caller's jobs"),
                "delete": {**_read("cancel a queued or running job (an ended job is returned unchanged)")},
            },
            "/artifacts/{artifact_id}": {"get": {
                "summary": "download an artifact (input, output, report, manifest, keyframe-N, heatmap-N)",
                "security": [{"apiKey": []}],
                "parameters": [{"name": "artifact_id", "in": "path", "required": True,
                                "schema": {"type": "string", "format": "uuid"}}],
                "responses": {"200": {"description": "the file, as the artifact's media_type says (video/mp4, "
                                                     "image/jpeg, application/json...)",
                                      "content": {"*/*": {}}},
                              "404": {"$ref": "#/components/responses/NotFound"}, **COMMON_ERRORS}}},
            "/manifests/{job_id}": {"get": {
                "summary": "the C2PA manifest store a job signed, or the one a verified clip points to",
                "security": [{"apiKey": []}], "parameters": [ID],
                "responses": {"200": _binary("a C2PA manifest store", "application/c2pa"),
                              "404": {"$ref": "#/components/responses/NotFound"}, **COMMON_ERRORS}}},
        },
        "components": {
            "securitySchemes": {"apiKey": {
                "type": "http", "scheme": "bearer",
                "description": "an API key from `manage.py apikeys create`; scopes verify, generate, sign. "
                               "The key's webhook secret, shown with it, signs the webhooks of its jobs"}},
            "responses": {
                "Unauthorized": _problem("no valid API key"),
                "Forbidden": _problem("the key lacks the scope this needs"),
                "NotFound": _problem("no such resource for this key's owner"),
                "TooManyRequests": {**_problem("rate limited; see Retry-After"),
                                    "headers": {"Retry-After": {"schema": {"type": "integer"}}}},
            },
            "schemas": {
                "Problem": {"type": "object", "required": ["type", "title", "status"], "properties": {
                    "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
                    "detail": {"type": "string"}, "instance": {"type": "string"},
                    "errors": {"type": "array", "items": {"type": "object", "properties": {
                        "field": {"type": "string"}, "message": {"type": "string"}}}},
                    "retry_after": {"type": "integer"}}},
                "Artifact": {"type": "object", "properties": {
                    "id": {"type": "string"}, "job_id": {"type": ["string", "null"]}, "role": {"type": "string"},
                    "sha256": {"type": "string"}, "size": {"type": "integer"}, "media_type": {"type": "string"},
                    "filename": {"type": "string"}, "href": {"type": "string"}}},
                "Job": {"type": "object", "required": ["id", "kind", "state"], "properties": {
                    "id": {"type": "string"}, "kind": {"type": "string", "enum": ["verify", "sign", "generate"]},
                    "state": {"type": "string", "enum": ["queued", "running", "succeeded", "failed", "cancelled"]},
                    "stage": {"type": "string"}, "percent": {"type": "number"}, "params": {"type": "object"},
                    "created_at": {"type": "string", "format": "date-time"},
                    "updated_at": {"type": "string", "format": "date-time"},
                    "started_at": {"type": ["string", "null"]}, "finished_at": {"type": ["string", "null"]},
                    "attempts": {"type": "integer"}, "error": {"type": ["string", "null"]},
                    "error_kind": {"type": ["string", "null"], "enum": [
                        None, "bad_input", "unavailable", "timeout", "transient", "abandoned", "internal"]},
                    "result": {"type": ["object", "null"]},
                    "artifacts": {"type": "array", "items": {"$ref": "#/components/schemas/Artifact"}},
                    "links": {"type": "object", "additionalProperties": {"type": "string"}}}},
                "Verification": {"allOf": [{"$ref": "#/components/schemas/Job"}, {"type": "object", "properties": {
                    "report": {"type": "object", "description": "the verification report (version 4): c2pa, "
                               "watermark, detector, artifacts (forensic signals), verdict, file, keyframes",
                               "properties": {"version": {"type": "integer"},
                                              "keyframes": {"$ref": "#/components/schemas/Keyframes"}}}}}]},
                "Keyframes": {"type": "object", "required": ["version", "items", "heatmaps"],
                              "description": "keyframes spread over the clip (JPEG thumbnails, longest side at most "
                                             "thumbnail_max_px) and the detector's artifact heatmaps over them "
                                             "(PNG), each stored as an artifact of the job", "properties": {
                    "version": {"type": "integer"}, "selection": {"type": "string"},
                    "thumbnail_max_px": {"type": "integer"},
                    "items": {"type": "array", "maxItems": 6, "items": {"$ref": "#/components/schemas/Keyframe"}},
                    "heatmaps": {"type": "object", "required": ["state"], "properties": {
                        "state": {"type": "string", "enum": ["per_frame", "clip_average", "none"]},
                        "message": {"type": ["string", "null"], "description": "why there are none, or how the "
                                    "one there is was made"},
                        "scale": {"type": "array", "description": "the colour scale: [position 0..1, '#rrggbb'] "
                                  "stops from probability 0 to 1", "items": {"type": "array", "prefixItems": [
                                      {"type": "number"}, {"type": "string"}], "minItems": 2, "maxItems": 2}},
                        "opacity": {"type": "number"}, "cell_px": {"type": "integer"},
                        "model_id": {"type": "string"}}}}},
                "Keyframe": {"type": "object", "required": ["index", "time_s", "image"], "properties": {
                    "index": {"type": "integer", "description": "the frame's index in decode order"},
                    "time_s": {"type": "number"}, "width": {"type": "integer"}, "height": {"type": "integer"},
                    "image": {"type": "string", "description": "role of the thumbnail's artifact (keyframe-N)"},
                    "heatmap": {"type": ["string", "null"], "description": "role of the heatmap's artifact "
                                "(heatmap-N), when the detector drew one over this keyframe"},
                    "heatmap_source": {"type": ["string", "null"], "enum": ["frame", "clip_average", None]},
                    "image_artifact": {"oneOf": [{"$ref": "#/components/schemas/PictureLink"}, {"type": "null"}]},
                    "heatmap_artifact": {"oneOf": [{"$ref": "#/components/schemas/PictureLink"},
                                                   {"type": "null"}]}}},
                "PictureLink": {"type": "object", "required": ["id", "href"], "properties": {
                    "id": {"type": "string", "description": "the artifact's id"},
                    "href": {"type": "string", "description": "where to download it (GET /artifacts/{id})"}}},
                "WebhookEvent": {"type": "object", "required": ["event", "job"], "properties": {
                    "event": {"type": "string", "enum": ["job.succeeded", "job.failed", "job.cancelled"]},
                    "job": {"$ref": "#/components/schemas/Verification",
                            "description": "the job as GET /<kind>/{job_id} returns it"}}},
                "BatchItem": {"type": "object", "required": ["index", "status"], "properties": {
                    "index": {"type": "integer", "description": "position of the file in the request"},
                    "filename": {"type": ["string", "null"]},
                    "status": {"type": "integer", "description": "202 when queued, else the problem's status"},
                    "id": {"type": "string", "description": "the job, when queued"},
                    "state": {"type": "string"}, "location": {"type": "string", "description": "where to poll it"},
                    "problem": {"$ref": "#/components/schemas/Problem"}}},
                "BatchResult": {"type": "object", "required": ["items", "accepted", "rejected"], "properties": {
                    "items": {"type": "array", "items": {"$ref": "#/components/schemas/BatchItem"}},
                    "accepted": {"type": "integer"}, "rejected": {"type": "integer"}}},
                "JobPage": {"type": "object", "required": ["items", "limit", "offset"], "properties": {
                    "items": {"type": "array", "items": {"$ref": "#/components/schemas/Job"}},
                    "limit": {"type": "integer"}, "offset": {"type": "integer"},
                    "next": {"type": ["string", "null"]}, "previous": {"type": ["string", "null"]}}},
                "GenerationRequest": {
                    "type": "object", "required": ["prompt"], "additionalProperties": False,
                    "description": "an optional field that is null takes its default, as if it were left out",
                    "properties": {
                        "prompt": {"type": "string", "minLength": 1, "maxLength": 2000, "pattern": "\\S",
                                   "description": "not blank"},
                        **{name: _nullable(schema) for name, schema in {
                            "negative": {"type": "string", "maxLength": 2000},
                            "title": {"type": "string", "maxLength": 200},
                            "width": {"type": "integer", "minimum": 16, "maximum": 4096},
                            "height": {"type": "integer", "minimum": 16, "maximum": 4096},
                            "seconds": {"type": "number", "minimum": 0.04, "maximum": 600},
                            "fps": {"type": "number", "minimum": 1, "maximum": 120},
                            "steps": {"type": "integer", "minimum": 1, "maximum": 1000},
                            "cfg": {"type": "number", "minimum": 0, "maximum": 50},
                            "seed": {"type": "integer", "minimum": 0, "maximum": 2147483647},
                            "include_prompt": {"type": "boolean", "default": False,
                                               "description": "record the prompt in the manifest"},
                            "callback_url": CALLBACK_URL}.items()}}},
            },
        },
    }
