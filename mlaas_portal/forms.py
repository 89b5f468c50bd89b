from __future__ import annotations

from django import forms


class TokenForm(forms.Form):
    name = forms.CharField(max_length=80, required=False, label="Token name",
                           help_text="What the token is for, e.g. `nightly upload script`.",
                           widget=forms.TextInput(attrs={"placeholder": "e.g. nightly upload script"}))
