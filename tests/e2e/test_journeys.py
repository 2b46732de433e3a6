"""Journeys through the tenant portal in a real browser (Debian's chromium, headless), against the
appliance served over HTTP. Each journey saves a screenshot per step to test-artifacts/<journey>/ and
fails on any CSP violation, script error, failed request or error response it did not provoke."""

from __future__ import annotations

import datetime as dt
import re
import time

import pytest

from appliance.substrate import totp
from tests.e2e.conftest import Journey, Watch

pytestmark = pytest.mark.slow

DESKTOP = {"width": 1280, "height": 860}
TABLET = {"width": 800, "height": 1280}  # a ward tablet held upright


def sign_in(page, base: str, person, journey: Journey | None = None) -> None:
    page.goto(f"{base}/signin")
    page.get_by_label("E-mail").fill(person.email)
    page.get_by_label("Password").fill(person.password)
    if journey:
        journey.shot(page, "sign-in")
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(f"{base}/signin/mfa")
    page.get_by_label("Code").fill(totp.totp_at(person.totp_secret, time.time()))
    if journey:
        journey.shot(page, "mfa")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base}/")


def new_page(browser, watch: Watch, **options):
    context = browser.new_context(viewport=DESKTOP, locale="en-GB", **options)
    page = context.new_page()
    page.set_default_timeout(15_000)
    watch.attach(page)
    return context, page


def test_clinician_journey(browser, live_server, clinic, person_factory):
    """Sign in with MFA → find a patient → open the chart → place an order set (through the allergy
    override) → write a templated note → review and sign a result."""
    journey, watch = Journey("clinician-journey"), Watch()
    person = person_factory("clinician", clinic.slug)
    context, page = new_page(browser, watch)
    patient = clinic.charts[0]

    sign_in(page, live_server, person, journey)
    journey.shot(page, "home")
    page.get_by_role("link", name=re.compile("Open the portal")).click()

    # find a patient
    page.get_by_label("Name, MRN, identifier or phone").fill("achieng otieno")
    page.get_by_role("button", name="Search").click()
    page.wait_for_url(re.compile(r"/patients\?q="))
    journey.shot(page, "search-results")

    # open the chart
    page.get_by_role("link", name=re.compile("OTIENO")).click()
    page.wait_for_url(re.compile(rf"/patients/{patient.id}/chart$"))
    assert page.locator(".alert-allergy").inner_text().count("Paracetamol") == 1
    assert page.locator("svg.plot").count() >= 4
    assert page.locator("svg.spark").count() >= 3
    journey.shot(page, "chart")
    # On a small laptop every chart tab is in view: none hidden past the edge of a row that scrolls.
    page.set_viewport_size({"width": 1024, "height": 860})
    row = page.locator("nav.tabs").bounding_box()
    for tab in page.locator("nav.tabs a").all():
        box = tab.bounding_box()
        assert box["x"] + box["width"] <= row["x"] + row["width"] + 1, tab.inner_text()
    journey.shot(page, "chart-small-laptop")
    # On a phone each layer's name heads its pages: it sat level with their second line when they wrapped.
    page.set_viewport_size({"width": 390, "height": 844})
    for layer in page.locator("nav.layers .layer").all():
        name = layer.locator(".layer-name").bounding_box()
        first = layer.locator("a").first.bounding_box()
        assert name["y"] + name["height"] <= first["y"] + 1, layer.inner_text()
    page.set_viewport_size(DESKTOP)

    # record a diagnosis without knowing its code: the finder fills the form, the summary shows it
    page.get_by_role("link", name="Problems & allergies", exact=True).click()
    page.get_by_label("Find an ICD-10 code").fill("malaria")
    page.get_by_role("button", name="Find code").click()
    page.get_by_role("link", name="B54 Unspecified malaria").click()
    assert page.locator("#problem-form").get_by_label("ICD-10 code").input_value() == "B54"
    page.locator("#problem-form").get_by_label("Verification").select_option("provisional")
    journey.shot(page, "problem-from-finder")
    page.get_by_role("button", name="Add problem").click()
    page.wait_for_url(re.compile(r"/problems\?done=problem-added$"))
    page.get_by_role("link", name="Summary", exact=True).click()
    assert "Unspecified malaria" in page.locator("section[aria-labelledby=problems-title]").inner_text()
    journey.shot(page, "problem-on-summary")

    # the timeline, filtered to results
    page.get_by_role("link", name="Timeline", exact=True).click()
    page.get_by_label("Kind").select_option("result")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url(re.compile(r"kind=result"))
    assert page.locator(".tl-item.kind-result").count() > 40
    assert page.locator(".tl-item.kind-note").count() == 0
    journey.shot(page, "timeline-results")

    # place an order set: the drug–allergy check stops it and asks why
    page.get_by_role("link", name="Orders", exact=True).click()
    journey.shot(page, "orders")
    malaria = page.locator("form#set-MALARIA")
    malaria.get_by_label("Priority").select_option("urgent")
    malaria.get_by_label("Clinical information").fill("Fever and rigors for two days")
    malaria.get_by_role("button", name="Place Suspected malaria").click()
    page.wait_for_url(re.compile(r"/order-sets$"))
    assert "Drug–allergy check" in page.locator("h2#override-title").inner_text()
    assert "Paracetamol" in page.locator(".override .alert").inner_text()
    assert page.evaluate("document.activeElement.name") == "allergy_override_reason"  # our script focused it
    journey.shot(page, "allergy-override")
    page.get_by_label("Why give it anyway?").fill("Rash was mild and remote; no alternative antipyretic in stock")
    page.get_by_role("button", name="Order anyway, with this reason").click()
    page.wait_for_url(re.compile(r"/orders\?done=order-set-override$"))
    assert "allergy override and its reason are on the record" in page.locator(".notice").inner_text()
    open_orders = page.locator("section[aria-labelledby=open-title]").inner_text()
    assert "Malaria blood smear" in open_orders and "Malaria rapid diagnostic test" in open_orders
    journey.shot(page, "order-set-placed")

    # write a note from the facility's template: the server's validation answers next to the field
    page.get_by_role("link", name="Notes", exact=True).click()
    page.get_by_role("link", name="Outpatient review").click()
    page.get_by_label("Presenting complaint").fill("Fever and rigors for two days, no vomiting")
    page.get_by_label("Temperature").fill("38.4")
    page.get_by_role("radio", name="Yes").check()
    page.get_by_role("button", name="Save note").click()
    page.wait_for_url(re.compile(r"/notes$"))
    error = page.locator("#f-assessment-error")
    assert "required" in error.inner_text()
    assert page.get_by_label("Presenting complaint").input_value().startswith("Fever and rigors")  # kept
    journey.shot(page, "note-inline-error")
    page.get_by_label("Assessment").fill("Probable uncomplicated malaria; anaemia known")
    page.get_by_label("Plan").fill("Await smear and RDT; paracetamol given with override; review today")
    page.get_by_role("button", name="Save note").click()
    page.wait_for_url(re.compile(r"/notes\?done=note$"))
    first_note = page.locator("article.note").first.inner_text()
    assert "Outpatient review" in first_note and "38.4 °C" in first_note
    assert "Probable uncomplicated malaria" in first_note
    journey.shot(page, "note-saved")

    # review and sign a result
    page.get_by_role("link", name="Results", exact=True).click()
    abnormal = page.locator("table.review tr.abnormal").first
    assert "Haemoglobin" in abnormal.inner_text() and "Low" in abnormal.inner_text()
    journey.shot(page, "results-to-review")
    abnormal.get_by_role("textbox").fill("Known anaemia, improving; continue ferrous sulfate")
    abnormal.get_by_role("button", name=re.compile("^Sign")).click()
    page.wait_for_url(re.compile(r"/results\?done=signed$"))
    assert "Result signed." in page.locator(".notice").inner_text()
    assert "Haemoglobin" in page.locator("section[aria-labelledby=signed-title]").inner_text()
    journey.shot(page, "result-signed")
    page.get_by_role("link", name="Haemoglobin").first.click()
    assert "Haemoglobin over time" in page.locator("svg.plot title").first.inner_html()
    journey.shot(page, "haemoglobin-trend")

    # the same chart on a ward tablet held upright
    page.set_viewport_size(TABLET)
    page.goto(f"{live_server}/t/{clinic.slug}/patients/{patient.id}/chart")
    journey.shot(page, "chart-on-tablet")
    context.close()
    watch.assert_clean(provoked={409, 422})  # the allergy check's refusal and the note's validation


def test_registrar_journey_and_encounter_finish(browser, live_server, clinic, person_factory):
    """The front desk registers a patient and opens a visit; the clinician finishes it (confirmed)."""
    journey, watch = Journey("registrar-journey"), Watch()
    registrar = person_factory("registrar", clinic.slug)
    context, page = new_page(browser, watch)
    sign_in(page, live_server, registrar)
    page.goto(f"{live_server}/t/{clinic.slug}/patients")
    assert page.get_by_role("link", name="Register a patient").count() == 1
    page.get_by_role("link", name="Register a new patient").click()
    page.get_by_label("Family name").fill("Njoroge")
    page.get_by_label("Given names").fill("Daniel Kiprono")
    page.locator("#birth_date").fill("1975-06-30")
    page.get_by_label("Sex").select_option("male")
    page.get_by_label("National ID").fill(clinic.charts[0].national_id)  # already someone else's
    page.get_by_role("button", name="Register").click()
    assert "already belongs to another patient" in page.locator("#national_id-error").inner_text()
    assert page.evaluate("document.activeElement.classList.contains('error-summary')")
    journey.shot(page, "duplicate-identifier")
    page.get_by_label("National ID").fill("28801234")
    page.get_by_role("button", name="Register").click()
    page.wait_for_url(re.compile(r"/patients/[0-9a-f-]{36}\?done=registered$"))
    assert page.get_by_role("link", name="Summary").count() == 0  # no chart for the front desk
    journey.shot(page, "registered")
    page.get_by_role("link", name="Start an encounter").click()
    page.get_by_label("Kind").select_option("outpatient")
    page.get_by_label("Reason for the visit").fill("Cough for three weeks")
    page.get_by_label("Ward").select_option("GEN")
    page.get_by_label("Temperature").fill("37.2")
    page.get_by_label("Systolic").fill("124")
    page.get_by_label("Diastolic").fill("78")
    journey.shot(page, "start-encounter")
    page.get_by_role("button", name="Start encounter").click()
    page.wait_for_url(re.compile(r"\?done=encounter-started$"))
    patient_url = page.url.split("?")[0]
    journey.shot(page, "encounter-started")
    context.close()

    clinician = person_factory("clinician", clinic.slug)
    context, page = new_page(browser, watch)
    sign_in(page, live_server, clinician)
    page.goto(f"{patient_url}/chart")
    page.once("dialog", lambda dialog: dialog.accept())  # our script asks before finishing
    page.locator("section[aria-labelledby=enc-title]").get_by_role("button", name="Finish").click()
    page.wait_for_url(re.compile(r"/chart\?done=encounter-updated$"))
    assert "finished" in page.locator("section[aria-labelledby=enc-title]").inner_text()
    journey.shot(page, "encounter-finished")
    context.close()
    watch.assert_clean(provoked={422})


def test_another_facilitys_session_is_refused_in_the_browser(browser, live_server, clinic, other_clinic,
                                                             person_factory):
    journey, watch = Journey("cross-tenant"), Watch()
    intruder = person_factory("clinician", other_clinic.slug)
    context, page = new_page(browser, watch)
    sign_in(page, live_server, intruder)
    response = page.goto(f"{live_server}/t/{clinic.slug}/patients/{clinic.charts[0].id}/chart")
    assert response.status == 403
    assert "Not allowed" in page.locator("h1").inner_text()
    assert "OTIENO" not in page.content()
    journey.shot(page, "refused")
    own = page.goto(f"{live_server}/t/{other_clinic.slug}/patients")
    assert own.status == 200
    context.close()
    watch.assert_clean(provoked={403})


def test_a_stale_csrf_token_is_refused_in_the_browser(browser, live_server, clinic, person_factory):
    watch = Watch()
    elsewhere_context, elsewhere = new_page(browser, watch)
    elsewhere.goto(f"{live_server}/signin")
    stale = elsewhere.locator('input[name="_csrf_token"]').first.get_attribute("value")
    elsewhere_context.close()

    context, page = new_page(browser, watch)
    sign_in(page, live_server, person_factory("clinician", clinic.slug))
    page.goto(f"{live_server}/t/{clinic.slug}/patients/{clinic.charts[1].id}/notes/new")
    page.locator("#text").fill("Should never be saved")
    page.evaluate("(token) => { for (const i of document.querySelectorAll('input[name=_csrf_token]')) "
                  "i.value = token; }", stale)
    with page.expect_response(re.compile(r"/notes$")) as posted:
        page.get_by_role("button", name="Save note").click()
    assert posted.value.status == 403
    page.wait_for_load_state()  # the refusal is shown before the next navigation, not aborted by it
    page.goto(f"{live_server}/t/{clinic.slug}/patients/{clinic.charts[1].id}/notes")
    assert "Should never be saved" not in page.content()
    context.close()
    watch.assert_clean(provoked={403})


def test_csp_forbids_inline_script_and_the_watch_would_see_it(browser, live_server, clinic, person_factory):
    watch = Watch()
    context, page = new_page(browser, watch)
    response = page.goto(f"{live_server}/signin")
    csp = response.headers["content-security-policy"]
    script_src = re.search(r"script-src ([^;]+)", csp).group(1)
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp and script_src.strip() == "'self'"
    sign_in(page, live_server, person_factory("nurse", clinic.slug))
    page.goto(f"{live_server}/t/{clinic.slug}/patients/{clinic.charts[0].id}/chart")
    assert watch.csp == []
    # An injected inline script is refused by the browser, and the journeys' watch reports it.
    page.evaluate("() => { const s = document.createElement('script'); s.textContent = 'window.pwned = 1';"
                  " document.body.appendChild(s); }")
    page.wait_for_timeout(200)
    assert page.evaluate("window.pwned") is None
    assert watch.csp, "the browser did not report the blocked inline script"
    context.close()


def test_the_chart_reads_with_javascript_off_and_forms_still_post(browser, live_server, clinic, person_factory):
    journey, watch = Journey("no-javascript"), Watch()
    context, page = new_page(browser, watch, java_script_enabled=False)
    sign_in(page, live_server, person_factory("clinician", clinic.slug))
    patient = clinic.charts[1]
    page.goto(f"{live_server}/t/{clinic.slug}/patients/{patient.id}/chart")
    assert "Penicillin" in page.locator(".alert-allergy").inner_text()
    journey.shot(page, "chart")
    page.goto(f"{live_server}/t/{clinic.slug}/patients/{patient.id}/notes/new")
    page.get_by_label("Title").fill("Telephone consultation")
    page.locator("#text").fill("Advised to attend clinic tomorrow.")
    page.get_by_role("button", name="Save note").click()
    page.wait_for_url(re.compile(r"/notes\?done=note$"))
    assert "Telephone consultation" in page.locator("article.note").first.inner_text()
    journey.shot(page, "note-saved")
    context.close()
    watch.assert_clean()


def test_breaking_the_glass_in_the_browser(browser, live_server, clinic, person_factory):
    """A chart with no care relationship asks why; with a reason it opens, says so, and stays open."""
    journey, watch = Journey("break-the-glass"), Watch()
    context, page = new_page(browser, watch)
    sign_in(page, live_server, person_factory("clinician", clinic.slug))
    never_seen = clinic.charts[3]
    page.goto(f"{live_server}/t/{clinic.slug}/patients?q={never_seen.national_id}")
    page.get_by_role("link", name=re.compile("HASSAN")).click()
    assert "no care relationship" in page.locator("h1").inner_text()
    journey.shot(page, "asked-why")
    page.get_by_label("Why do you need to open this chart?").fill("Collapsed in the outpatient queue")
    page.get_by_role("button", name="Open the chart and record my reason").click()
    page.wait_for_url(re.compile(r"/chart$"))  # the reason is kept in a cookie, never in the address
    assert "Opened by breaking the glass" in page.locator(".alert-glass").inner_text()
    journey.shot(page, "chart-opened")
    page.get_by_role("link", name="Timeline", exact=True).click()
    assert "Opened by breaking the glass" in page.locator(".alert-glass").inner_text()
    context.close()
    watch.assert_clean(provoked={403})


def test_regulator_keeps_checkpoints_and_later_proves_the_log_only_grew(browser, live_server, clinic, db,
                                                                        person_factory, tmp_path):
    """The regulator console in a browser: each log's latest signed checkpoint → keep a facility's
    checkpoints (a download) → the log grows → bring the file back → 'only grew since'. And an address
    that is not there is a page saying so, not JSON."""
    import uuid

    from appliance.substrate import audit
    from appliance.substrate.principal import Principal

    journey, watch = Journey("regulator-journey"), Watch()
    context, page = new_page(browser, watch, accept_downloads=True)
    sign_in(page, live_server, person_factory("regulator", kind="regulator"))
    page.get_by_role("link", name="Open the regulator console").click()
    row = page.locator(f'tr[data-log="{clinic.slug}"]')
    assert clinic.name in row.inner_text()
    journey.shot(page, "console")

    with page.expect_download() as downloaded:
        page.get_by_role("button", name=f"Keep the checkpoints of {clinic.name}").click()
    kept = tmp_path / downloaded.value.suggested_filename
    downloaded.value.save_as(kept)
    assert kept.name.startswith(f"healthos-checkpoints-{clinic.slug}-")

    with db.tenant(clinic.slug) as conn:  # the facility's work goes on: its log grows
        audit.append(conn, tenant=clinic.slug, principal=Principal(uuid.uuid4(), "staff", "Test", tenant=clinic.slug),
                     event_type="test.event", action="R")
    page.goto(f"{live_server}/regulator")
    page.set_input_files("#checkpoints", str(kept))
    page.get_by_role("button", name="Prove the log only grew").click()
    page.wait_for_url(f"{live_server}/regulator")
    assert "the log verifies and only grew since" in page.content()
    journey.shot(page, "only-grew")

    missing = page.goto(f"{live_server}/regulator/no-such-page")
    assert missing.status == 404 and page.locator("h1").inner_text() == "Not found"
    journey.shot(page, "not-found")
    context.close()
    watch.assert_clean(provoked={404})


def test_the_regulator_takes_one_evidence_package_after_another(browser, live_server, clinic, person_factory):
    """A download leaves the console where it is: the export form takes the next log without a reload. The
    one-click guard kept the form locked after its first file, so choosing another log and pressing
    Download did nothing until the page was reloaded."""
    watch = Watch()
    context, page = new_page(browser, watch, accept_downloads=True)
    sign_in(page, live_server, person_factory("regulator", kind="regulator"))
    posted: list[str] = []
    page.on("request", lambda request: request.method == "POST" and request.url.endswith("/regulator/export")
            and posted.append(request.post_data))
    page.clock.install()  # the guard frees a download's form after a moment: the test moves the clock, not waits
    page.goto(f"{live_server}/regulator")
    page.clock.pause_at(dt.datetime.now() + dt.timedelta(seconds=5))
    download = page.get_by_role("button", name="Download evidence package")

    page.get_by_label("Log", exact=True).select_option(clinic.slug)
    with page.expect_download() as first:
        download.click()
    assert first.value.suggested_filename.startswith(f"healthos-evidence-{clinic.slug}-")
    assert len(posted) == 1 and f"log={clinic.slug}" in posted[0]
    assert download.get_attribute("aria-disabled") == "true"  # a second click now would post nothing

    page.clock.run_for(2_000)
    assert download.get_attribute("aria-disabled") is None
    page.get_by_label("Log", exact=True).select_option("appliance")
    with page.expect_download() as second:
        download.click()
    assert second.value.suggested_filename.startswith("healthos-evidence-appliance-")
    assert len(posted) == 2
    context.close()
    watch.assert_clean()


def test_facility_admin_issues_and_revokes_an_api_token(browser, live_server, clinic, person_factory):
    """A facility admin in a browser: home → the facility's API tokens → issue one for a lab feed with one
    permission (its value shown once) → it answers on the API → revoke it → refused."""
    import httpx

    journey, watch = Journey("facility-admin-journey"), Watch()
    context, page = new_page(browser, watch)
    sign_in(page, live_server, person_factory("facility_admin", clinic.slug))
    page.get_by_role("link", name=re.compile("Open the portal")).click()
    page.wait_for_url(f"{live_server}/t/{clinic.slug}/admin/tokens")
    page.get_by_label("What it is for").fill("Lab analyser feed")
    page.locator("summary", has_text="Clinical").click()  # each layer's permissions fold away
    # On a phone the calls each permission opens (long paths, no space) ran past the card's edge.
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    calls = page.locator(".permission-layer label.choice .muted").first.bounding_box()
    assert calls is not None and calls["x"] + calls["width"] <= 390
    page.set_viewport_size(DESKTOP)
    page.get_by_role("checkbox", name=re.compile(r"^clinical\.patient\.search")).check()
    page.get_by_role("button", name="Issue the token").click()
    token = page.get_by_role("textbox", name="Token", exact=True).input_value()
    assert token.startswith("hos_") and "Token issued: Lab analyser feed" in page.content()
    journey.shot(page, "issued")

    def search() -> int:
        return httpx.get(f"{live_server}/api/t/{clinic.slug}/patients", params={"name": "nobody"},
                         headers={"Authorization": f"Bearer {token}"}, timeout=10).status_code

    assert search() == 200
    page.goto(f"{live_server}/t/{clinic.slug}/admin/tokens")
    assert token not in page.content()  # shown once
    page.get_by_role("button", name="Revoke the token for Lab analyser feed").click()
    assert "Token revoked" in page.content()
    journey.shot(page, "revoked")
    assert search() == 401

    # Staff: the ward nurse moves from the general ward to maternity.
    nurse = person_factory("nurse", clinic.slug, ward="GEN")
    page.get_by_role("link", name="Staff", exact=True).click()
    row = page.locator("tr", has_text=nurse.email)
    row.get_by_role("combobox").select_option("MAT")
    row.get_by_role("button", name=re.compile("^Move")).click()
    assert "Ward changed" in page.content()
    assert page.locator("tr", has_text=nurse.email).get_by_role("combobox").input_value() == "MAT"
    journey.shot(page, "staff")
    context.close()
    watch.assert_clean()


def test_operator_opens_the_appliance_console(browser, live_server, clinic, person_factory):
    """Hospital IT in a browser: home → the appliance console: schemas at head, the facility, the logs."""
    journey, watch = Journey("operator-journey"), Watch()
    context, page = new_page(browser, watch)
    sign_in(page, live_server, person_factory("operator", kind="operator"))
    page.get_by_role("link", name="Open the appliance console").click()
    page.wait_for_url(f"{live_server}/appliance")
    assert "Every facility's schema is at" in page.locator("#readiness").inner_text()
    assert clinic.name in page.locator(f'tr[data-tenant="{clinic.slug}"]').inner_text()
    journey.shot(page, "console")
    context.close()
    watch.assert_clean()


def test_ministry_analyst_reads_a_month_and_takes_it_away(browser, live_server, clinic, person_factory, tmp_path):
    """The ministry in a browser: home → national indicators (the last whole month) → this month, one
    indicator broken down → the month as CSV and as a DHIS2 dataValueSet, downloaded."""
    import datetime as dt
    import json

    journey, watch = Journey("ministry-journey"), Watch()
    context, page = new_page(browser, watch, accept_downloads=True)
    sign_in(page, live_server, person_factory("ministry_analyst", kind="ministry_analyst"))
    page.get_by_role("link", name="Open the national indicators").click()
    page.wait_for_url(f"{live_server}/national")
    journey.shot(page, "last-month")
    this_month = dt.datetime.now(dt.UTC).strftime("%Y-%m")
    page.get_by_label("Month").select_option(this_month)
    page.get_by_label("Breakdown of").select_option("malaria_cases")
    page.get_by_role("button", name="Show").click()
    page.wait_for_url(re.compile(rf".*/national\?period={this_month}&indicator=malaria_cases"))
    assert "Malaria cases diagnosed, national, by sex and age" in page.content()
    assert clinic.name in page.locator(f'#facilities tr[data-facility="{clinic.slug}"]').inner_text()
    journey.shot(page, "this-month-malaria")
    with page.expect_download() as downloaded:
        page.get_by_role("link", name="Download CSV").click()
    sheet = tmp_path / downloaded.value.suggested_filename
    downloaded.value.save_as(sheet)
    assert sheet.name == f"healthos-national-{this_month}.csv"
    lines = sheet.read_text().splitlines()
    assert lines[0].startswith("period,indicator,dhis2_data_element,facility")
    assert any(f",{clinic.slug}," in line for line in lines[1:])
    with page.expect_download() as downloaded:
        page.get_by_role("link", name="Download DHIS2 dataValueSet").click()
    value_set = json.loads(downloaded.value.path().read_text())
    assert value_set["period"] == this_month.replace("-", "")
    context.close()
    watch.assert_clean()


def test_a_patient_is_invited_enrols_and_sees_their_record_and_who_opened_it(browser, live_server, clinic,
                                                                            person_factory):
    """The front desk invites a patient → the patient follows the one-time link, chooses a password,
    signs in (no authenticator for patients) → their record from this facility → who opened it."""
    journey, watch = Journey("patient-journey"), Watch()
    chart = clinic.charts[0]  # a year of history and a paracetamol allergy
    context, page = new_page(browser, watch)
    sign_in(page, live_server, person_factory("registrar", clinic.slug))
    page.goto(f"{live_server}/t/{clinic.slug}/patients/{chart.id}")
    email = f"achieng-{time.time_ns()}@example.org"
    page.get_by_label("E-mail").fill(email)
    page.get_by_role("button", name="Invite to the patient portal").click()
    link = page.locator("#enrolment-link").inner_text()
    journey.shot(page, "invited")
    context.close()

    context, page = new_page(browser, watch)
    page.goto(link)
    # the QR code is drawn (it was a broken image, its alt text where the code should be)
    assert page.locator("img.qr").evaluate("img => img.complete && img.naturalWidth > 0")
    page.get_by_label("Password").fill("a long enough passphrase")
    journey.shot(page, "enrol")
    page.get_by_role("button", name="Finish").click()
    page.wait_for_url(re.compile(r"/signin"))
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill("a long enough passphrase")
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(f"{live_server}/")
    page.get_by_role("link", name="Open your record").click()
    page.wait_for_url(f"{live_server}/me")
    facility = page.locator(f'section[data-facility="{clinic.slug}"]')
    assert clinic.name in facility.inner_text() and "Paracetamol" in facility.locator(".allergies").inner_text()
    journey.shot(page, "record")
    page.get_by_role("link", name="Who opened it").click()
    page.wait_for_url(f"{live_server}/me/access")
    today = page.locator("section.access-day").first  # the day said in lines: who did what, how often, when
    log = today.locator("ul.access-groups").inner_text()
    assert "Test clinician" in log and "Test registrar" in log and " times" in log
    # the patient's own reads are left out until asked for: they bury the staff's
    assert today.get_by_text("You", exact=True).count() == 0
    page.get_by_role("link", name="Show yours too").click()
    page.wait_for_url(f"{live_server}/me/access?who=all")
    today = page.locator("section.access-day").first
    assert today.get_by_text("You", exact=True).count() >= 1
    assert "looked at your chart" in today.inner_text() and "Test clinician" in today.inner_text()
    journey.shot(page, "access-log")
    # On a phone the day's lines fit the screen: nothing past its edge, and the page a few screens long, not
    # the hundreds of lines (tens of thousands of pixels) a morning's reads made of it.
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
    # every tab of their record in view, the page they are on too: the row scrolled, three tabs past its edge
    row = page.locator("nav.tabs").bounding_box()
    for tab in page.locator("nav.tabs a").all():
        box = tab.bounding_box()
        assert box["x"] + box["width"] <= row["x"] + row["width"] + 1, tab.inner_text()
    lines, tall = today.locator("ul.access-groups > li").count(), page.evaluate("document.documentElement.scrollHeight")
    assert tall < 844 * 8, (lines, tall)
    journey.shot(page, "access-log-phone")
    # Every access of the day on its own page; what was done stays in view (one facility: no column for it).
    today.get_by_role("link", name=re.compile(r"^Every entry of this day")).click()
    page.wait_for_url(re.compile(r"/me/access\?day=\d{4}-\d\d-\d\d&who=all$"))
    what = page.locator("#access-log tbody tr").first.locator("td").last.bounding_box()
    assert what["x"] + what["width"] <= 390, what
    journey.shot(page, "access-log-day-phone")
    context.close()
    watch.assert_clean()
