"""A booking saga: flight, hotel and car are booked step by step; when payment fails, the
bookings made so far are cancelled newest first. Each cancellation is recorded, so a crash in
the middle of compensating resumes without cancelling anything twice.

    flux exec examples/trip_saga.py book_trip --input '{"traveller": "ada", "card": "declined"}'
    flux exec examples/trip_saga.py book_trip --input '{"traveller": "ada", "card": "ok"}'
"""

from __future__ import annotations

from flux import ExecutionContext, Saga, task, workflow
from flux.tasks import idempotency_key


@task
async def book_flight(trip: dict) -> str:
    return f"FL-{trip['traveller']}"


@task
async def book_hotel(trip: dict) -> str:
    return f"HT-{trip['traveller']}"


@task.with_options(retry_max_attempts=2, retry_delay=0.1)
async def book_car(trip: dict) -> str:
    return f"CR-{trip['traveller']}"


@task
async def cancel_booking(reference: str) -> str:
    return f"cancelled {reference}"


@task
async def charge(trip: dict) -> str:
    if trip["card"] != "ok":
        raise PermissionError(f"card {trip['card']}")
    return f"charged with key {idempotency_key()}"


@workflow
async def book_trip(ctx: ExecutionContext[dict]) -> dict:
    trip = ctx.input
    async with Saga() as saga:
        flight = await saga.step(book_flight(trip), compensate=cancel_booking)
        hotel = await saga.step(book_hotel(trip), compensate=cancel_booking)
        car = await saga.step(book_car(trip), compensate=cancel_booking)
        receipt = await charge(trip)
    return {"flight": flight, "hotel": hotel, "car": car, "receipt": receipt}
