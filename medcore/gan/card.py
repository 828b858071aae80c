"""The generator's model card, written from its own metadata at training time: no number typed by hand."""

from __future__ import annotations

from typing import Any

# What generators trained before the recipe was recorded in their metadata were made with.
FIRST_RECIPE = ("conditional DCGAN (class one-hot at the generator's input and as discriminator planes, transposed "
                "convolutions, binary cross-entropy with one-sided label smoothing, beta1 0.5)")


def _row(name: str, q: dict[str, Any]) -> str:
    return (f"| {name} | {q['fd']:.2f} | {q['fd_floor']:.2f} | {q['fd_ratio']:.2f} | {q['precision']:.3f} | "
            f"{q['recall']:.3f} | {q['gate_accepted']:.1%} | {q['gate_accepted_real']:.1%} |")


def gan_model_card(meta: dict[str, Any]) -> str:
    quality = meta["metrics"]["validation"]
    training, memo, options = meta["training"], meta["memorization"], meta["options"]
    rows = "\n".join(_row(name, q) for name, q in quality["per_class"].items())
    curve = "\n".join(f"| {h['epoch']} | {h['loss']:.3f} | {h['d_loss']:.3f} | "
                      + (f"{h['fd_ratio']:.2f} | {h['precision']:.3f} | {h['recall']:.3f} | {h['gate_accepted']:.1%} |"
                         if "fd_ratio" in h else "| | | |") for h in training["history"])
    closest = "\n".join(f"| {p['generated_class']} | {p['ratio']:.2f} |" for p in memo["closest"])
    return f"""# Model card: MedCore synthetic chest film generator `{meta['version']}`

## Intended use
Synthetic **paediatric frontal chest films** at {meta['image_size']} px, one class at a time (NORMAL or
PNEUMONIA), for training-set augmentation experiments and demonstrations. Every film it writes carries a visible
SYNTHETIC mark and a file tag; the X-ray page refuses tagged films and never logs them as studies. A synthetic
film is not evidence about any patient.

## Data and training
- Data: `{meta['data']['source']}` ({meta['data']['n_train']} films, {', '.join(
        f'{n} {c}' for c, n in zip(meta['labels'], meta['data']['train_counts']))}), fingerprint
  `{meta['data']['fingerprint'][:16]}`; the classifier's preprocessing contract, scaled to [-1, 1].
- Network: {training.get('recipe', FIRST_RECIPE)}; generator {training['parameters']:,} parameters, latent size
  {meta['latent_dim']}, width {options['width']}; Adam {options['learning_rate']:g}, batch {options['batch_size']},
  differentiable translation/brightness/contrast augmentation before the discriminator; seed {options['seed']}.
- Command: `{training['command']}`; {training['epochs_run']} epochs in {training['seconds'] / 60:.1f} min on
  {training['device']}; epoch {training['best_epoch']} kept (best Fréchet ratio).

## Quality (epoch {training['best_epoch']})
{meta['quality_method']}. The Fréchet ratio is the generated-vs-real distance over the real-vs-real floor: 1 would
be indistinguishable from another set of real films in the classifier's eyes.

| class | Fréchet distance | floor (real vs real) | ratio | precision | recall | gate accepts (generated) | gate accepts (real) |
|---|---|---|---|---|---|---|---|
{rows}

## Per-epoch curve
| epoch | generator loss | discriminator loss | Fréchet ratio | precision | recall | gate accepts |
|---|---|---|---|---|---|---|
{curve}

## Memorization check
{memo['n_generated']} generated films against every training film, in {memo['space']}. A generated film is
*suspiciously close* when it is nearer to a training film than {100 - memo['percentile']:g} % of training films
are to the nearest film of **another** patient (distance {memo['threshold']:.3f}; the median such distance is
{memo['typical_distance']:.3f}). Suspiciously close: **{memo['share_suspicious']:.1%}** (a generator above
{memo['max_share']:.0%} is not registered). Median nearest-film distance of generated films:
{memo['median_ratio']:.2f} x the typical distance between patients.

The closest pairs ({len(memo['closest'])} generated films beside their nearest training film, 64 px thumbnails,
no file names) are kept in the generator's folder for an administrator to inspect, until deleted on the admin
page:

| generated class | distance / typical |
|---|---|
{closest or '| (deleted) | |'}

## Limitations
- Judged in the feature space of one small classifier, not by radiologists: a good Fréchet ratio means the
  classifier cannot tell the films apart, not that a reader could not.
- {meta['image_size']} px films hold no fine detail (no reliable interstitial pattern, tubes or lines).
"""
