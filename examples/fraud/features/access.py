"""Who may see which features — declared here, reviewed like the features themselves.

Deny by default: a token whose roles grant nothing gets nothing. ``user.email`` is tagged pii:
the scoring service may name it and gets it masked; the support desk sees two user fields only.
"""

import parity as pt

fraud_scoring = pt.Role(
    "fraud_scoring",
    description="The payment-authorisation service: every fraud feature, pii masked.",
    grants=[pt.Grant(entity="transaction"), pt.Grant(entity="user"), pt.Grant(entity="card"),
            pt.Grant(entity="merchant"), pt.Grant(entity="user_merchant")],
    pii="mask",
)

support_desk = pt.Role(
    "support_desk",
    description="Customer support: a customer's country and KYC tier, nothing else.",
    grants=[pt.Grant(features=["user.country", "user.kyc_level"])],
)
