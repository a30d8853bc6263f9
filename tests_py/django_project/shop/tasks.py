"""Found by ``manage.py errands_worker`` (every installed app's tasks module)."""

from errands import task

from .models import Order


@task("shop.confirm_order")
def confirm_order(payload, helpers):
    # A sync task: it runs in a worker thread and uses the ORM as any Django code does.
    Order.objects.filter(pk=payload["order_id"]).update(status="confirmed")
