from datetime import datetime
from typing import Annotated

import parity as pt

from features.entities import transaction, user


@pt.resolver(entity=user, outputs=pt.Feature("account_age_days", pt.Float64, description="Days since signup."))
def account_age_days(signup_at: datetime | None, now: datetime) -> float | None:
    if signup_at is None:
        return None
    return (now - signup_at).total_seconds() / 86400


@pt.resolver(entity=transaction, outputs=pt.Feature("amount_vs_user_avg", pt.Float64))
def amount_vs_user_avg(
    amount: float | None, avg: Annotated[float | None, "user.amount_avg_30d"]
) -> float | None:
    if amount is None or not avg:
        return None
    return amount / avg


@pt.resolver(entity=transaction, outputs=pt.Feature("is_foreign", pt.Bool, description="Merchant abroad."))
def is_foreign(
    home: Annotated[str | None, "user.country"], where: Annotated[str | None, "merchant.country"]
) -> bool | None:
    if home is None or where is None:
        return None
    return home != where


@pt.resolver(entity=transaction, outputs=pt.Feature("card_age_days", pt.Float64))
def card_age_days(issued_at: Annotated[datetime | None, "card.issued_at"], now: datetime) -> float | None:
    return None if issued_at is None else (now - issued_at).total_seconds() / 86400


@pt.resolver(entity=transaction, outputs=pt.Feature("is_new_merchant_for_user", pt.Bool))
def is_new_merchant_for_user(count: Annotated[int | None, "user_merchant.txn_count_90d"]) -> bool:
    return not count


@pt.resolver(
    entity=transaction,
    outputs=[pt.Feature("risk_bucket", pt.String), pt.Feature("needs_review", pt.Bool)],
)
async def merchant_risk(
    amount: float | None, risk: Annotated[float | None, "merchant.risk_score"]
) -> tuple[str | None, bool]:
    # An async resolver: in production this would await a scoring service.
    if risk is None:
        return None, False
    bucket = "high" if risk > 0.7 else "medium" if risk > 0.3 else "low"
    return bucket, bucket == "high" and (amount or 0.0) > 200.0


@pt.resolver(entity=transaction, outputs=pt.Feature("velocity_alert", pt.Bool,
                                                     description="A burst on the card or an unusual day."))
def velocity_alert(
    card_10m: Annotated[int, "card.txn_count[10m]"],
    day_sum: Annotated[float, "user.amount_sum[1d]"],
    p90: Annotated[float | None, "user.amount_p90[30d]"],
    amount: float | None,
) -> bool:
    burst = card_10m >= 3
    unusual = p90 is not None and amount is not None and amount > 2 * p90 and day_sum > 3 * p90
    return burst or unusual
