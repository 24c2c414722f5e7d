"""The compliance console: search, event detail, access reports, verify, exports.

Every page here reads the audit trail and so writes an audit event itself
(PCI DSS 10.2.1.3). Views are thin: form, selector or service, render.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.core.paginator import Paginator
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from audit import conf, selectors
from audit.exportformat import Filters
from audit.forms import ExportForm, SearchForm, default_range
from audit.models import AuditExport, AuditVerification, ExportFile, ExportStatus, VerificationStatus
from audit.recorder import audit_record
from audit.services.exports import (
    CONTENT_TYPES,
    FILE_NAMES,
    ExportError,
    export_link_consume,
    export_link_create,
    export_open,
    export_request,
)
from audit.signing import published_keys
from audit.subjects import subject_exists, subject_name_read
from security.permissions import require_permission

PAGE_SIZE = 50
REPORT_SIZE = 200


def _who(request: HttpRequest) -> dict[str, Any]:
    return {"actor": request.user, "actor_role": request.access.role, "request": request}  # type: ignore[attr-defined]


def _link_actor(request: HttpRequest) -> dict[str, Any]:
    return {"user": request.user, "actor_role": request.access.role}  # type: ignore[attr-defined]


def _page_context(request: HttpRequest, events: Any) -> dict[str, Any]:
    page = Paginator(events, PAGE_SIZE).get_page(request.GET.get("page"))
    rows = list(page.object_list)
    _label_actors(request, rows)
    return {"page": page, "events": rows}


def _label_actors(request: HttpRequest, events: list[Any]) -> None:
    labels = selectors.actor_labels(tenant=request.tenant, events=events)  # type: ignore[attr-defined]
    for event in events:
        event.actor_label = labels.get(str(event.actor_user_id), "")
        event.patient_uuid = _uuid_or_none(event.target_id) if event.target_type == "patient" else None


def _uuid_or_none(value: str) -> UUID | None:
    try:
        return UUID(value)
    except ValueError:
        return None


@require_permission("audit.view")
@require_GET
def search(request: HttpRequest) -> HttpResponse:
    tenant = request.tenant  # type: ignore[attr-defined]
    data = request.GET if "date_from" in request.GET else default_range()
    form = SearchForm(data, tenant=tenant)
    if not form.is_valid():
        return render(request, "audit/search.html", {"form": form, "events": []}, status=400)
    filters = form.filters()
    context = _page_context(request, selectors.event_search(tenant=tenant, filters=filters))
    query = request.GET.copy()
    query.pop("page", None)
    context.update(form=form, query=query.urlencode())
    with transaction.atomic():
        audit_record(
            action="audit.searched",
            tenant=tenant,
            target_type="audit_search",
            details={
                **{k: str(v) for k, v in form.cleaned_data.items() if v},
                "page": context["page"].number,
                "results": context["page"].paginator.count,
            },
            **_who(request),
        )
    return render(request, "audit/search.html", context)


@require_permission("audit.view")
@require_GET
def event_detail(request: HttpRequest, event_id: UUID) -> HttpResponse:
    tenant = request.tenant  # type: ignore[attr-defined]
    event = selectors.access_event_by_uuid(tenant=tenant, uuid=event_id)
    with transaction.atomic():
        audit_record(
            action="audit.event_viewed",
            tenant=tenant,
            target_type="audit_event",
            target_id=str(event.public_id),
            **_who(request),
        )
    _label_actors(request, [event])
    return render(request, "audit/event.html", {"event": event})


@require_permission("audit.view")
@require_GET
def patient_report(request: HttpRequest, patient_id: UUID) -> HttpResponse:
    """Who accessed this patient's records.

    Names the patient only to a user who may also read patients (billing's
    describer, audit.subjects), and that read is audited; everyone else sees the id.
    """
    tenant = request.tenant  # type: ignore[attr-defined]
    if not subject_exists(tenant=tenant, subject_type="patient", subject_id=patient_id):
        raise Http404
    context = _page_context(request, selectors.events_naming_patient(tenant=tenant, patient_id=patient_id))
    with transaction.atomic():
        audit_record(
            action="audit.patient_report",
            tenant=tenant,
            target_type="patient",
            target_id=str(patient_id),
            **_who(request),
        )
    name = subject_name_read(
        tenant=tenant,
        subject_type="patient",
        subject_id=patient_id,
        permissions=request.access.permissions,  # type: ignore[attr-defined]
        shown_on="audit.patient_report",
        **_who(request),
    )
    context.update(patient_id=patient_id, patient_name=name)
    response = render(request, "audit/patient_report.html", context)
    response["Cache-Control"] = "no-store"  # it may carry the patient's name (PHI)
    return response


@require_permission("audit.view")
@require_GET
def user_report(request: HttpRequest, user_id: UUID) -> HttpResponse:
    """What did this user do at this clinic."""
    tenant = request.tenant  # type: ignore[attr-defined]
    subject = selectors.access_member_by_uuid(tenant=tenant, uuid=user_id)
    context = _page_context(request, selectors.events_by_actor(tenant=tenant, user=subject))
    with transaction.atomic():
        audit_record(
            action="audit.user_report",
            tenant=tenant,
            target_type="user",
            target_id=str(subject.public_id),
            **_who(request),
        )
    context.update(subject=subject)
    return render(request, "audit/user_report.html", context)


@require_permission("audit.view")
@require_http_methods(["GET", "POST"])
def verify(request: HttpRequest) -> HttpResponse:
    tenant = request.tenant  # type: ignore[attr-defined]
    if request.method == "POST":
        from audit.tasks import audit_verification_run

        with transaction.atomic():
            verification = AuditVerification.objects.create(tenant=tenant, requested_by=request.user)  # type: ignore[misc]
            audit_record(
                action="audit.verify_requested",
                tenant=tenant,
                target_type="audit_verification",
                target_id=str(verification.public_id),
                **_who(request),
            )
            pk = verification.pk
            transaction.on_commit(lambda: audit_verification_run.delay(pk))
        return redirect("audit:verification", verification_id=verification.public_id)
    history = list(AuditVerification.objects.filter(tenant=tenant)[:20])
    keys = published_keys()
    context = {"history": history, "signing_key": keys[0] if keys else None, "earlier_keys": keys[1] if keys else []}
    return render(request, "audit/verify.html", context)


@require_permission("audit.view")
@require_GET
def signing_key(request: HttpRequest) -> HttpResponse:
    """The public key that signs checkpoints and exports (PEM), for `python -m audit.verify --public-key`.

    Public by nature; served to officers so the key comes from the server, not
    from the export it is meant to check. 404 when records are HMAC-signed.
    """
    keys = published_keys()
    if keys is None:
        raise Http404
    response = HttpResponse(keys[0].pem(), content_type="application/x-pem-file")
    response["Content-Disposition"] = 'attachment; filename="audit-signing.pem"'
    return response


@require_permission("audit.view")
@require_GET
def verification(request: HttpRequest, verification_id: UUID) -> HttpResponse:
    tenant = request.tenant  # type: ignore[attr-defined]
    item = selectors.access_verification_by_uuid(tenant=tenant, uuid=verification_id)
    running = item.status in (VerificationStatus.PENDING, VerificationStatus.RUNNING)
    context = {
        "item": item,
        "running": running,
        "no_checkpoint": _no_checkpoint_reason(tenant, item),
        "checkpoint_seconds": conf.checkpoint_interval_seconds(),
    }
    return render(request, "audit/verification.html", context)


def _no_checkpoint_reason(tenant: Any, item: AuditVerification) -> str:
    """Why an intact chain had no signed checkpoint to check ("" when it had some).

    "none_yet": nothing has signed one (beat is not running, as under `make
    run`); "not_covered": checkpoints exist but none lay in what this run checked.
    """
    if item.status != VerificationStatus.PASSED or item.checkpoints_checked:
        return ""
    return "not_covered" if selectors.checkpoint_exists(tenant=tenant) else "none_yet"


@require_permission("audit.export")
@require_http_methods(["GET", "POST"])
def exports(request: HttpRequest) -> HttpResponse:
    tenant = request.tenant  # type: ignore[attr-defined]
    status = 200
    if request.method == "POST":
        form = ExportForm(request.POST, tenant=tenant)
        if form.is_valid():
            chosen = form.filters()
            filters = Filters(
                action=chosen.action,
                outcome=chosen.outcome,
                actor=str(chosen.actor or ""),
                patient=str(chosen.patient or ""),
                target_type=chosen.target_type,
            )
            try:
                export = export_request(
                    tenant=tenant, date_from=chosen.date_from, date_to=chosen.date_to, filters=filters, **_who(request)
                )
            except ExportError as exc:
                form.add_error(None, str(exc))
            else:
                return redirect("audit:export", export_id=export.public_id)
        status = 400
    else:
        form = ExportForm(initial=default_range(), tenant=tenant)
    history = list(AuditExport.objects.filter(tenant=tenant).select_related("requested_by")[:50])
    return render(request, "audit/exports.html", {"form": form, "history": history}, status=status)


@require_permission("audit.export")
@require_GET
def export_detail(request: HttpRequest, export_id: UUID) -> HttpResponse:
    export = selectors.access_export_by_uuid(tenant=request.tenant, uuid=export_id)  # type: ignore[attr-defined]
    running = export.status in (ExportStatus.PENDING, ExportStatus.RUNNING)
    files = [(kind, FILE_NAMES[kind], ExportFile(kind).label) for kind in FILE_NAMES]
    return render(request, "audit/export.html", {"export": export, "running": running, "files": files})


@require_permission("audit.export")
@require_POST
def export_download(request: HttpRequest, export_id: UUID) -> HttpResponse:
    """Issue a single-use link for one file and send the officer to it."""
    export = selectors.access_export_by_uuid(tenant=request.tenant, uuid=export_id)  # type: ignore[attr-defined]
    kind = request.POST.get("file", "")
    if kind not in FILE_NAMES:
        raise Http404
    try:
        token = export_link_create(export=export, kind=kind, request=request, **_link_actor(request))
    except ExportError:
        return redirect("audit:export", export_id=export.public_id)
    return redirect("audit:download", token=token)


@require_permission("audit.export")
@require_GET
def download(request: HttpRequest, token: str) -> HttpResponse:
    use = export_link_consume(
        tenant=request.tenant,  # type: ignore[attr-defined]
        token=token,
        user=request.user,
        actor_role=request.access.role,  # type: ignore[attr-defined]
        request=request,
    )
    if use.status == "missing":
        raise Http404
    if use.status == "gone" or use.export is None:
        return render(request, "audit/link_gone.html", status=410)
    response = StreamingHttpResponse(
        export_open(export=use.export, kind=use.kind), content_type=CONTENT_TYPES[ExportFile(use.kind)]
    )
    response["Content-Disposition"] = (
        f'attachment; filename="audit-{use.export.public_id}-{FILE_NAMES[ExportFile(use.kind)]}"'
    )
    response["Cache-Control"] = "no-store"
    return response  # type: ignore[return-value]  # a streamed file is still a response
