import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("builds", "0009_build_sizing"),
    ]

    operations = [
        migrations.AddField(
            model_name="modelversion",
            name="insight",
            field=models.JSONField(blank=True, default=dict, help_text=(
                "Confusion matrix and ROC, or predicted-vs-actual and residuals, and feature importance, "
                "computed by the evaluate step on the test split (mlaas_steps.insight).")),
        ),
        migrations.AddField(
            model_name="modelversion",
            name="lineage",
            field=models.JSONField(blank=True, default=dict, help_text=(
                "What the version was made from: dataset object version, image, algorithm, hyperparameters "
                "(and tuned ones), fixed at registration.")),
        ),
        migrations.AddField(
            model_name="modelversion",
            name="replaces",
            field=models.ForeignKey(blank=True, help_text=(
                "The tenant's approved version when this one was registered, else its previous version."),
                null=True, on_delete=django.db.models.deletion.SET_NULL, related_name="+",
                to="builds.modelversion"),
        ),
    ]
