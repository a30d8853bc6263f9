from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    dependencies = ()  # Django copies both into lists

    operations = (
        migrations.CreateModel(
            name="Order",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("item", models.CharField(max_length=100)),
                ("status", models.CharField(default="placed", max_length=20)),
            ],
        ),
    )
