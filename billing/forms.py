from __future__ import annotations

import re
from datetime import date, timedelta
from decimal import Decimal

from django import forms
from django.conf import settings

MAX_EXPORT_DAYS = 366
MONTH_PATTERN = re.compile(r"^(\d{4})-(\d{2})$")


class InstancePriceForm(forms.Form):
    instance_type = forms.CharField(max_length=40, help_text="A SageMaker instance type, e.g. ml.m5.large.")
    region = forms.CharField(max_length=20)
    price_per_hour = forms.DecimalField(max_digits=10, decimal_places=4, min_value=Decimal("0.0001"),
                                        label="Price per hour (USD)")
    add_new = forms.BooleanField(required=False, label="New instance type (not in the table yet)")

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("initial", {}).setdefault("region", settings.AWS_REGION)
        super().__init__(*args, **kwargs)


class DateRangeForm(forms.Form):
    start = forms.DateField(required=False)
    end = forms.DateField(required=False)

    def clean(self):
        data = super().clean()
        start, end = data.get("start"), data.get("end")
        if start and end:
            if end < start:
                raise forms.ValidationError("end must not be before start.")
            if (end - start).days >= MAX_EXPORT_DAYS:
                raise forms.ValidationError(f"At most {MAX_EXPORT_DAYS} days per export.")
        return data

    def range_or_default(self, today: date) -> tuple[date, date]:
        """The requested days, or the 30 days ending today."""
        data = self.cleaned_data if self.is_bound and self.is_valid() else {}
        end = data.get("end") or today
        start = data.get("start") or end - timedelta(days=29)
        return start, end


def parse_month(value: str | None, default: date) -> date:
    """`YYYY-MM` as the month's first day; the default's month for anything else."""
    match = MONTH_PATTERN.match(value or "")
    if match:
        year, month = int(match.group(1)), int(match.group(2))
        if 2000 <= year <= 2100 and 1 <= month <= 12:
            return date(year, month, 1)
    return default.replace(day=1)
