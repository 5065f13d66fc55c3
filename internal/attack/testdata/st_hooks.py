# Hooks of TestSchemathesis (schemathesis loads this file: `hooks` in
# schemathesis.toml).
#
# `format: phone` in schemas/openapi.yaml is a phone number that
# libphonenumber reads as a possible one, which no JSON Schema keyword can
# say. Generated phones are drawn from numbers of that kind, written the
# ways people write them; schemathesis cannot make a schema-valid phone
# otherwise, and cannot make an invalid one from a format it does not know
# (those are the API's own tests: api/, suppression/).
import schemathesis
from hypothesis import strategies as st

PHONES = [
    "+1 800 555 0100",
    "(800) 555-0100",
    "+18005550100",
    "800.555.0100",
    "+44 20 7946 0958",
    "+442079460958",
    "+49 30 901820",
    "+33 1 42 68 53 00",
    "+34 912 345 678",
    "+61 2 9374 4000",
    "+81 3-3224-5000",
    "+91 22 2202 8000",
    "+55 11 3003-3030",
    "+27 21 405 4911",
]

schemathesis.openapi.format("phone", st.sampled_from(PHONES))

# An event's `time` is when the person acted: the server refuses one more
# than 15 minutes ahead of its clock, which a date-time format cannot say.
# Generated times are from the last 30 days, so generated events get past
# that rule and are published (the rule itself is the API's tests').
from datetime import datetime, timedelta, timezone

_now = datetime.now(timezone.utc).replace(tzinfo=None)
schemathesis.openapi.format(
    "date-time",
    st.datetimes(min_value=_now - timedelta(days=30), max_value=_now - timedelta(minutes=1)).map(
        lambda d: d.isoformat(timespec="milliseconds") + "Z"
    ),
)
