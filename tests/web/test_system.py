"""Health, readiness, OpenAPI and error shape of the web app."""

import gc
import re

import sqlalchemy as sa
from litestar.testing import TestClient

from appliance.substrate.db import Database, tenant_schema
from appliance.substrate.migrate import head
from appliance.web.app import create_app


def test_health_answers_while_the_process_lives(client):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response.headers["x-request-id"]


def test_ready_is_200_when_every_schema_is_at_head(client, tenant_a):
    response = client.get("/ready")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "ready"


def test_ready_is_503_naming_the_tenant_behind_head(client, db: Database, tenant_factory):
    behind = tenant_factory()
    with db.control() as conn:
        conn.exec_driver_sql(f'UPDATE "{tenant_schema(behind.slug)}".alembic_version SET version_num = \'t0001\'')
    try:
        response = client.get("/ready")
        assert response.status_code == 503
        assert behind.slug in response.json()["reason"]
        assert "run healthos migrate" in response.json()["reason"]
    finally:
        with db.control() as conn:
            conn.execute(sa.text(f'UPDATE "{tenant_schema(behind.slug)}".alembic_version SET version_num = :v'),
                         {"v": head("tenant")})


def test_ready_says_a_schema_ahead_of_the_code_is_not_fixed_by_migrating(client, db: Database, tenant_factory):
    """After the code is rolled back, a schema a newer release migrated holds a revision this code does not
    know: telling the operator to run healthos migrate would send them nowhere."""
    ahead = tenant_factory()
    with db.control() as conn:
        conn.exec_driver_sql(f'UPDATE "{tenant_schema(ahead.slug)}".alembic_version SET version_num = \'t9999\'')
    try:
        response = client.get("/ready")
        assert response.status_code == 503, response.text
        reason = response.json()["reason"]
        assert ahead.slug in reason and "ahead of this code" in reason and "run healthos migrate" not in reason
        assert "restore the backup taken before that upgrade" in reason
    finally:
        with db.control() as conn:
            conn.execute(sa.text(f'UPDATE "{tenant_schema(ahead.slug)}".alembic_version SET version_num = :v'),
                         {"v": head("tenant")})


def test_unknown_tenant_is_a_404_naming_it(client):
    response = client.get("/api/t/atlantis_general/wards")
    assert response.status_code == 404
    assert response.json()["tenant"] == "atlantis_general"
    assert "atlantis_general" in response.json()["detail"]


def test_the_request_log_says_what_was_answered(client):
    from structlog.testing import capture_logs

    with capture_logs() as logged:
        assert client.get("/api/t/atlantis_general/wards").status_code == 404
    [line] = [e for e in logged if e["event"] == "request"]
    assert (line["status"], line["route"]) == (404, "/api/t/{tenant}/wards")
    with capture_logs() as logged:  # a browser without a session is sent to sign in
        assert client.get("/regulator", follow_redirects=False).status_code == 302
    assert [e["status"] for e in logged if e["event"] == "request"] == [302]


def test_malformed_tenant_slug_is_a_404_not_a_500(client):
    for slug in ["UPPER", "x", "a" * 40, "t_x;drop"]:
        response = client.get(f"/api/t/{slug}/wards")
        assert response.status_code == 404, slug
        assert "Traceback" not in response.text


BROWSER = {"accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


def test_a_browser_asking_for_a_page_that_is_not_there_gets_a_page(client, signed_in, tenant_a, tenant_b):
    for path in ("/no-such-page", f"/t/{tenant_a.slug}/no-such-page", "/t/atlantis_general/patients"):
        shown = client.get(path, headers=BROWSER)
        assert shown.status_code == 404, path
        assert shown.headers["content-type"].startswith("text/html"), path
        assert "<h1>Not found</h1>" in shown.text and 'href="/"' in shown.text, path
    assert "no page at this address" in client.get("/no-such-page", headers=BROWSER).text
    assert "atlantis_general" in client.get("/t/atlantis_general/patients", headers=BROWSER).text
    # Refused by a page's own guard (a nurse at another facility's page), the way back leads to her own
    # facility's page she lands on: her ward's worklist.
    nurse = signed_in("nurse", tenant_a.slug)
    theirs = nurse.get(f"/t/{tenant_b.slug}/patients", headers=BROWSER)
    assert theirs.status_code == 403 and f'href="/t/{tenant_a.slug}/ward">Back to your facility' in theirs.text
    # API clients, and anyone not asking for a page, still get the structured JSON.
    assert client.get("/api/t/atlantis_general/wards", headers=BROWSER).json()["tenant"] == "atlantis_general"
    assert client.get("/no-such-page").json() == {"status_code": 404, "detail": "Not Found"}


def test_tenant_route_reads_only_its_own_tenant(signed_in, tenant_a, tenant_b):
    wards_a = signed_in("nurse", tenant_a.slug).get(f"/api/t/{tenant_a.slug}/wards").json()
    wards_b = signed_in("nurse", tenant_b.slug).get(f"/api/t/{tenant_b.slug}/wards").json()
    assert [w["code"] for w in wards_a] == ["GEN"]
    assert [w["code"] for w in wards_b] == ["MAT"]
    assert wards_a[0]["beds"] == 3


def test_openapi_lists_every_route_with_an_operation_id(client):
    document = client.get("/schema/openapi.json").json()
    app = client.app
    documented = {(path, method) for path, item in document["paths"].items() for method in item}
    operations = [op for item in document["paths"].values() for op in item.values()]
    assert operations, "the OpenAPI document lists no operation"
    assert all(op.get("operationId") for op in operations)
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            if handler.include_in_schema and route.path.split("/")[1] not in {"schema", "static"}:
                for method in handler.http_methods:
                    path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)
                    assert (path, method.lower()) in documented


def test_openapi_names_the_permission_each_operation_needs(client, app):
    document = client.get("/schema/openapi.json").json()
    assert set(document["components"]["securitySchemes"]) == {"bearer", "session"}
    needs = {}
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            for method in handler.http_methods:
                needs[(re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path), method.lower())] = handler.opt.get("permission")
    searched = document["paths"]["/api/t/{tenant}/patients"]["get"]["security"]
    assert searched == [{"bearer": ["clinical.patient.search"]}, {"session": ["clinical.patient.search"]}]
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if path.startswith("/api/me/"):  # the patient's own API: their session alone, no facility's token
                assert operation["security"] == [{"session": [needs[(path, method)]]}], (path, method)
            elif path.startswith("/api/") and needs[(path, method)] is not None:
                assert operation["security"][0] == {"bearer": [needs[(path, method)]]}, (path, method)
    # What anyone may call says so by naming no scheme.
    assert "security" not in document["paths"]["/health"]["get"]
    assert "security" not in document["paths"]["/api/national/packages"]["post"]


def test_openapi_says_how_a_registration_answers_the_national_id_question(client):
    document = client.get("/schema/openapi.json").json()
    for path, method in [("/api/t/{tenant}/patients", "post"), ("/api/t/{tenant}/patients/{patient_id}", "put")]:
        refused = document["paths"][path][method]["responses"]["409"]
        assert "national_id_confirmed: true" in refused["description"], (path, method)
    shapes = document["components"]["schemas"]
    assert {"requires_national_id_confirmation", "differs"} <= set(shapes["RegistrationRefused"]["properties"])
    assert "national_id_confirmed" in shapes["PatientIn"]["properties"]


def test_no_interactive_docs_page_pulls_from_a_cdn(client):
    for path in ["/schema", "/schema/swagger", "/schema/redoc", "/schema/elements"]:
        response = client.get(path)
        assert "cdn" not in response.text.lower()
        assert "unpkg" not in response.text.lower()


def test_what_startup_built_is_frozen_out_of_the_collectors_walks(db, settings):
    # A full collection that walks the app's ~190,000 startup objects stalls every request of the
    # worker (up to ~100 ms under bench/chart.py); a serving process freezes them once.
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    with TestClient(app=create_app(db, settings)) as started:
        assert started.get("/health").status_code == 200
        assert gc.get_freeze_count() > 100_000
