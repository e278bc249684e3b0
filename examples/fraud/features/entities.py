import parity as pt

user = pt.Entity("user", keys={"user_id": pt.Int64}, description="A customer account.")
merchant = pt.Entity("merchant", keys={"merchant_id": pt.Int64}, description="Where cards are used.")
card = pt.Entity(
    "card",
    keys={"card_id": pt.String},
    relationships={"user": pt.HasOne(user, via="user_id")},
    description="A payment card; a user has several.",
)
# A composite key: the history of one user at one merchant.
user_merchant = pt.Entity(
    "user_merchant",
    keys={"user_id": pt.Int64, "merchant_id": pt.Int64},
    relationships={"user": pt.HasOne(user, via="user_id"), "merchant": pt.HasOne(merchant, via="merchant_id")},
)
transaction = pt.Entity(
    "transaction",
    keys={"transaction_id": pt.String},
    relationships={
        "user": pt.HasOne(user, via="user_id"),
        "card": pt.HasOne(card, via="card_id"),
        "merchant": pt.HasOne(merchant, via="merchant_id"),
        "user_merchant": pt.HasOne(user_merchant, via=["user_id", "merchant_id"]),
    },
    description="One card payment.",
)
