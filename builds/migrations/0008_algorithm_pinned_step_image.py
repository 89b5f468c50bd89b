"""Algorithms pin the step image by repository and digest instead of a free-text image URI.

The old URI is split into repository and tag (nothing is lost); the digest stays empty until the algorithm is
saved again or `seed_demo` points the seeded algorithms at the published step image.
"""

from django.db import migrations, models


def split_image_uri(apps, schema_editor):
    Algorithm = apps.get_model("builds", "Algorithm")
    for algorithm in Algorithm.objects.all():
        uri = algorithm.training_image_uri or ""
        repository, _, digest = uri.partition("@")
        tag = ""
        if not digest and ":" in repository.rsplit("/", 1)[-1]:
            repository, _, tag = repository.rpartition(":")
        algorithm.image_repository, algorithm.image_tag, algorithm.image_digest = repository, tag, digest
        algorithm.save(update_fields=["image_repository", "image_tag", "image_digest"])


def join_image_uri(apps, schema_editor):
    Algorithm = apps.get_model("builds", "Algorithm")
    for algorithm in Algorithm.objects.all():
        suffix = f"@{algorithm.image_digest}" if algorithm.image_digest else (
            f":{algorithm.image_tag}" if algorithm.image_tag else "")
        algorithm.training_image_uri = f"{algorithm.image_repository}{suffix}"
        algorithm.save(update_fields=["training_image_uri"])


class Migration(migrations.Migration):
    dependencies = [("builds", "0007_entry_point_help_text")]

    operations = [
        migrations.AddField(
            model_name="algorithm", name="image_repository",
            field=models.CharField(blank=True, max_length=256,
                                   help_text="ECR repository URI of the step image: <registry>/<prefix>-steps"),
        ),
        migrations.AddField(
            model_name="algorithm", name="image_tag",
            field=models.CharField(blank=True, max_length=128, help_text="The tag that resolved to image_digest"),
        ),
        migrations.AddField(
            model_name="algorithm", name="image_digest",
            field=models.CharField(blank=True, max_length=71, help_text="sha256:<hex> as DescribeImages reported it"),
        ),
        migrations.RunPython(split_image_uri, join_image_uri),
        migrations.RemoveField(model_name="algorithm", name="training_image_uri"),
    ]
