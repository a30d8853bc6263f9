"""POST /orders/ item=...: saves an Order and enqueues its confirmation in one
transaction.  With fail=1 the view raises after both, inside the atomic block."""

from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from errands import JobSpec
from errands.contrib.django import add_job, add_jobs

from .models import Order


class PaymentDeclined(Exception):
    pass


@csrf_exempt
@require_POST
def place_order(request: HttpRequest) -> JsonResponse:
    try:
        with transaction.atomic():
            order = Order.objects.create(item=request.POST["item"])
            job = add_job("shop.confirm_order", {"order_id": order.pk}, max_attempts=3)
            if request.POST.get("fail"):
                raise PaymentDeclined(order.pk)
    except PaymentDeclined:
        return JsonResponse({"rolled_back": True}, status=402)
    return JsonResponse({"order": order.pk, "job": job.id, "payload": job.payload}, status=201)


@csrf_exempt
@require_POST
def place_orders(request: HttpRequest) -> JsonResponse:
    """POST /orders/bulk/ item=a&item=b: one order each, their jobs in one statement."""
    with transaction.atomic():
        orders = [Order.objects.create(item=item) for item in request.POST.getlist("item")]
        jobs = add_jobs([JobSpec("shop.confirm_order", {"order_id": o.pk}) for o in orders])
    return JsonResponse({"orders": [o.pk for o in orders], "jobs": [j.id for j in jobs]})
