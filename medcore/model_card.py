"""Model cards written from a model's own metadata at training time: no number is typed by hand."""

from __future__ import annotations

from typing import Any

from medcore.gan.usefulness import usefulness_section
from medcore.imaging.intended_use import IntendedUse

XRAY_DATA = ("Kermany, Zhang, Goldbaum, *Labeled Optical Coherence Tomography (OCT) and Chest X-Ray Images "
             "for Classification*, Mendeley Data v2 (Guangzhou Women and Children's Medical Center), "
             "licence CC BY 4.0; the official training split plus its 16-image validation split, 224 px copy.")


def _pct(value: float) -> str:
    return f"{value:.1%}"


def _refit_note(meta: dict[str, Any]) -> str:
    refit = meta.get("quality", {}).get("refit_command")
    return f" Refitted after training, weights untouched: `{refit}`." if refit else ""


def _ablation_section(ablation: dict[str, Any] | None) -> str:
    if not ablation:
        return ""
    rows = "\n".join(f"| {name} | {r['best_val_auc']:.4f} | {r['val_auc_range_after_epoch_3'][0]:.4f}-"
                     f"{r['val_auc_range_after_epoch_3'][1]:.4f} | {r['sensitivity']:.3f} / {r['specificity']:.3f} | "
                     f"{r['ece_raw']:.4f} → {r['ece_calibrated']:.4f} |" for name, r in ablation["results"].items())
    return f"""
## What each choice changes (`python benchmarks/ablation_xray.py`, {ablation['epochs']} epochs, seed {ablation['seed']})
| configuration | best val AUC | val AUC, epochs 4+ | sens / spec at threshold | ECE raw → calibrated |
|---|---|---|---|---|
{rows}

On this validation split (same hospital and period as training) neither choice changes the ranking measurably.
Class weights up-weight the minority class (NORMAL), so raw probabilities move away from pneumonia (raw ECE
up, Platt offset b = +2.2 instead of +0.75); calibration removes that bias, and the operating threshold is
chosen after it. Augmentation does not help in-distribution; it is kept for robustness to other equipment
and exposure, which this data cannot measure and the independent test split will.
"""


def _shift_note(shifted: dict[str, Any] | None) -> str:
    if not shifted:
        return ""
    return (f"\nOn the perturbed copies alone (simulated other equipment, {shifted['n']} films): AUC {shifted['auc']:.4f}, "
            f"sensitivity {_pct(shifted['sensitivity'])}, specificity {_pct(shifted['specificity'])}, ECE "
            f"{shifted['ece']:.4f}. Calibrating for shift trades a little internal ECE for honesty elsewhere.\n")


def release_comparison_rows(comparison: dict[str, Any]) -> list[dict[str, str]]:
    """The release comparison as rows of text (variant, films, figures with intervals): the card and the page."""
    keys = (("auc", "AUC", False), ("sensitivity", "sensitivity", True), ("specificity", "specificity", True),
            ("ece", "ECE", False))
    return [{"variant": row["variant"], "films scored on": row["part"], "n": str(row["figures"]["n"]),
             **{label: _interval(row["figures"], key, percent) for key, label, percent in keys}}
            for row in comparison["rows"]]


def release_comparison_section(comparison: dict[str, Any] | None) -> str:
    """Issue 24's side-by-side table (benchmarks/xray_release_table.py): what was compared before this release."""
    if not comparison:
        return ""
    rows = release_comparison_rows(comparison)
    header = list(rows[0])
    lines = "\n".join("| " + " | ".join(row[h] for h in header) + " |" for row in rows)
    return f"""
## Compared for this release: one network, adaptation, threshold rules (`{comparison['command']}`)
{comparison['notes']}

| {' | '.join(header)} |
|{'---|' * len(header)}
{lines}
"""


def ideas_section(ideas: dict[str, Any] | None) -> str:
    """The measured ideas for generalization (benchmarks/xray_ideas.py), internal against new patients."""
    if not ideas:
        return ""
    rows = "\n".join(f"| {r['idea']} | {_interval(r['internal'], 'auc', False)} | {_interval(r['external'], 'auc', False)} | "
                     f"{_interval(r['external'], 'accuracy')} | {_interval(r['external'], 'sensitivity')} | "
                     f"{_interval(r['external'], 'specificity')} | {_interval(r['external'], 'ece', False)} |"
                     for r in ideas["rows"])
    return f"""
## Ideas measured for new patients (`{ideas['command']}`)
Each row is the same trained networks scored on internal validation and on the external sample (95 % intervals).
Calibration and threshold are always fitted on internal data; the external sample only measures.

| idea | internal AUC | new patients AUC | accuracy | sensitivity | specificity | ECE |
|---|---|---|---|---|---|---|
{rows}

{ideas.get('notes', '')}
"""


def _network_line(meta: dict[str, Any]) -> str:
    training, members = meta["training"], meta["options"].get("members", 1)
    return (f"an ensemble of {members} small VGG-style CNNs (each trained alone with its own seed; the served "
            f"logit is their mean), {training['parameters']:,} parameters in all" if members > 1 else
            f"small VGG-style CNN, {training['parameters']:,} parameters")


def _synthetic_line(synthetic: dict[str, Any] | None) -> str:
    if not synthetic:
        return ""
    return (f"\n- Plus {synthetic['films']} synthetic {synthetic['class']} films from generator "
            f"`{synthetic['generator']}` ({synthetic['generator_size']} px, upsampled by the preprocessing), added to "
            "the training split only, in place of class weights; validation is real films only.")


def _data_and_training(meta: dict[str, Any]) -> str:
    """The Data and Training sections of a centrally trained model."""
    training, data, options, val = meta["training"], meta["data"], meta["options"], meta["metrics"]["validation"]
    network = _network_line(meta)
    checkpoints = ", ".join(str(e) for e in training.get("best_epochs", [training["best_epoch"]]))
    member_aucs = ", ".join(f"{auc:.4f}" for auc in val.get("members", []))
    return f"""## Data
- {XRAY_DATA}
- Folder `{data['source']}`, data fingerprint `{data['fingerprint'][:16]}…` (SHA-256 over names, labels and bytes).
- Validation split by child (patient id from the file name), stratified by class, seed {options['seed']},
  fraction {options['val_fraction']}: {data['n_train']} training images {data['train_counts']} and
  {data['n_val']} validation images {data['val_counts']} (NORMAL, PNEUMONIA).{_synthetic_line(data.get('synthetic'))}

## Training
- Command: `{training['command']}`
- Network: {network}, {meta['image_size']} px grayscale input
  (preprocessing `{meta['preprocess_version']}`: squash to square, area resampling, per-image z-score).
- {options['epochs']} epochs per member, batch {options['batch_size']}, AdamW (weight decay 1e-4), one warm-up epoch then cosine decay
  from {options['learning_rate']}; class weights: {options['class_weighting']} (inverse frequency, for the 1:3 imbalance);
  augmentation: {options['augmentation']} (rotation ±7°, shift ±5%, zoom in up to {options.get('zoom_in', 0.1):.0%} and out up to 10% per axis, gain/offset ±15%, noise; no flips).
- Checkpoint of each member: epoch {checkpoints} of {options['epochs']}, chosen by validation AUC{f" (member validation AUC {member_aucs})" if member_aucs else ""}.
- Calibration: Platt scaling (a = {meta['calibration']['a']:.3f}, b = {meta['calibration']['b']:.3f}) fitted on the
  {meta['calibration'].get('fitted_on', 'validation films')}.
- Threshold: {meta['threshold']:.4f}, the {meta['threshold_rule']}.{_calibration_refit_line(meta.get('refit'))}
- Time: {training['seconds'] / 60:.1f} min on {training['device']}; TensorFlow {training['tensorflow']}, Python {training['python']}.
"""


def _calibration_refit_line(refit: dict[str, Any] | None) -> str:
    if not refit:
        return ""
    return (f"\n- Calibration and threshold refitted after training on the same validation films and perturbed copies, "
            f"weights untouched: `{refit['command']}` ({refit['at']}; trained as `{refit['based_on']}`, whose "
            f"threshold {refit['previous_threshold']:.4f} was the {refit['previous_rule']}).")


def _privacy_line(privacy: dict[str, Any] | None) -> str:
    if not privacy:
        return "Differential privacy: off (weights are shared without added noise)."
    return (f"Differential privacy: each hospital's update clipped to norm {privacy['clipping_norm']}, Gaussian noise "
            f"multiplier {privacy['noise_multiplier']} ({privacy['mechanism']}): hospital-level "
            f"(epsilon = {privacy['epsilon']:.1f}, delta = {privacy['delta']:g}) over all rounds.")


def _federated_data_and_training(meta: dict[str, Any]) -> str:
    """The Data and Training sections of a federated model: what each hospital held, how the rounds went."""
    fed, training, options = meta["federated"], meta["training"], meta["options"]
    sites = "\n".join(f"| {name} | {c['NORMAL']} | {c['PNEUMONIA']} | {c['PNEUMONIA'] / (c['NORMAL'] + c['PNEUMONIA']):.0%} |"
                      for name, c in fed["sites"].items())
    last = [r for r in fed["history"] if r["kind"] == "validation"][-1:]
    site_aucs = ", ".join(f"{n} {v['auc']:.3f}" for n, v in last[0]["sites"].items()) if last else "none"
    mu = f", proximal mu {fed['proximal_mu']}" if fed.get("proximal_mu") is not None else ""
    return f"""## Data (federated: no film left its hospital)
- {XRAY_DATA}
- Each hospital kept its films; only weights and aggregate counts (binned validation logits, sums and scatter
  matrices for the quality gate) travelled. Each split its own patients for validation (fraction
  {options['val_fraction']}, seed {options['seed']}); {meta['data']['n_val']} validation films pooled by counts.

| hospital | NORMAL | PNEUMONIA | pneumonia share |
|---|---|---|---|
{sites}

## Training
- Command: `{training['command']}`
- {fed['transport']}; strategy {fed['strategy']}{mu}; {fed['rounds']} rounds of {fed['local_epochs']} local
  epoch(s); {fed['bytes_per_round'] / 1e6:.1f} MB sent per round (all sites, both directions).
- Network: {_network_line(meta)}, {meta['image_size']} px grayscale input (preprocessing
  `{meta['preprocess_version']}`), the central recipe's augmentation and class weighting at each site.
- Last round's validation AUC per hospital: {site_aucs}.
- {_privacy_line(fed.get('privacy'))}
- Calibration: Platt scaling (a = {meta['calibration']['a']:.3f}, b = {meta['calibration']['b']:.3f}) fitted on
  {meta['calibration']['fitted_on']}.
- Threshold: {meta['threshold']:.4f}, the {meta['threshold_rule']}.
- Time: {training['seconds'] / 60:.1f} min on {training['device']}; TensorFlow {training['tensorflow']}.
"""


def _intended_use_section(meta: dict[str, Any]) -> str:
    intended = IntendedUse.from_meta(meta)
    return f"""**Declared in this folder and enforced.** {intended.statement()} (Training data: {intended.source}.)
A DICOM film whose age (PatientAge, else PatientBirthDate and StudyDate) lies outside {intended.min_age_years} to \
{intended.max_age_years} years, whose ViewPosition is not {'/'.join(intended.views)}, whose modality is not \
{'/'.join(intended.modalities)} or whose body part is not the chest gets no decision, and a refusal that names the
reason; the PACS watcher lists such studies as "outside intended use". A film that carries no age (PNG, JPEG) is
scored with this population stated beside the result. An administrator may allow scoring outside the age range
(`medcore settings set xray_allow_outside_age on`, default off); every such result then says so on the page, in
the PDF, in the SR and in the audit log."""


def xray_model_card(meta: dict[str, Any], ablation: dict[str, Any] | None = None,
                    ideas: dict[str, Any] | None = None, federated_comparison: dict[str, Any] | None = None) -> str:
    val = meta["metrics"]["validation"]
    shifted = val.get("simulated_shift")
    return f"""# Model card: MedCore chest X-ray pneumonia classifier `{meta['version']}`

## Intended use
Decision support for reading **frontal (PA/AP) paediatric chest radiographs**: a calibrated probability of
pneumonia (bacterial or viral) against normal, a decision at a stated operating threshold, and a Grad-CAM
heatmap of the regions that raised the score. It does not replace a radiologist's or clinician's reading.
It is not validated for adults, lateral views, other findings (effusion, nodules, tubes and lines), or for
distinguishing bacterial from viral pneumonia.

{_intended_use_section(meta)}

{_federated_data_and_training(meta) if meta.get('federated') else _data_and_training(meta)}
## Validation metrics (calibrated, at the operating threshold; {val['n']} images of unseen children)
| AUC | accuracy | sensitivity | specificity | F1 | PPV | NPV | ECE (calibrated) | ECE (raw) |
|---|---|---|---|---|---|---|---|---|
| {val['auc']:.4f} | {_pct(val['accuracy'])} | {_pct(val['sensitivity'])} | {_pct(val['specificity'])} | {val['f1']:.4f} | {_pct(val['ppv'])} | {_pct(val['npv'])} | {val['ece']:.4f} | {val['ece_uncalibrated']:.4f} |

Confusion at the threshold: TP {val['tp']}, FN {val['fn']}, FP {val['fp']}, TN {val['tn']}.
{_shift_note(shifted)}
These are validation figures from the same hospital and period as the training data. The independent test
split of this data set is known to be harder (different acquisition period, more borderline normals);
expect lower specificity there. The same validation set chose the checkpoint, the calibration and the
threshold, so these figures are slightly optimistic.

{_history_section(meta)}
{release_section(meta.get('release'))}{external_section(meta)}{release_comparison_section(meta.get('release_comparison'))}{ideas_section(ideas or meta.get('ideas'))}{usefulness_section(meta.get('synthetic_usefulness'))}{_ablation_section(ablation)}{federated_comparison_section(federated_comparison)}{explanation_checks_section(meta.get('explanation_checks'))}
## Quality gate
{meta.get('quality', {}).get('method', 'PCA residual of thumbnails')}.{_refit_note(meta)}

## Limitations
- One centre, children aged 1-5: performance on adults, other hospitals, portable films and other
  equipment is unknown. Images are squashed to a square as the training data were.
- A quality gate refuses images unlike the training films (colour images, blank, noise, text, other
  DICOM modalities, lateral views); it cannot catch every out-of-scope image.
- Grad-CAM is coarse ({meta['image_size'] // 16} x {meta['image_size'] // 16} cells upsampled): it shows where evidence was found, not a segmentation.
  All heatmaps share one scale (the 95th percentile of heatmap peaks on validation films), so a faint
  map means weak evidence.
"""


def _flat_note(checks: dict) -> str:
    flat = [r for r in checks["cascading_randomization"] if r["rank_correlation"] == 0]
    if not flat:
        return ""
    return ("\nA rank correlation of exactly 0 means the randomised network's map was flat on the median film: no "
            "region raised its score, so Grad-CAM showed nothing (what a map that depends on the weights should do "
            "once they are gone).\n")


def _notes_split(meta: dict) -> str:
    """How the notes were used: a model refitted on every note records them all as n_train."""
    data = meta["data"]
    if meta.get("linear", {}).get("refit_on_all"):
        return (f"{data['n_train']} notes: {data['n_train'] - data['n_val']} for training and {data['n_val']} for "
                "validation while choosing, then the final model refitted on all of them")
    return f"{data['n_train']} training and {data['n_val']} validation notes"


def _history_section(meta: dict[str, Any]) -> str:
    """Per-epoch curves of a central training; per-round validation AUCs of a federated one (its epochs are the
    sites' own, never reported)."""
    federated = meta.get("federated")
    if federated:
        rows = [r for r in federated["history"] if r.get("kind") == "validation"]
        names = sorted({name for r in rows for name in r["sites"]})
        lines = "\n".join(f"| {r['round']} | {r['seconds'] / 60:.1f} | {r['global_auc']:.4f} | "
                          + " | ".join(f"{r['sites'][n]['auc']:.4f}" if n in r["sites"] else "–" for n in names) + " |"
                          for r in rows)
        return ("## Per-round history\n| round | minutes | pooled validation AUC | "
                + " | ".join(f"{n} AUC" for n in names) + " |\n|" + "---|" * (3 + len(names)) + f"\n{lines}\n")
    history = "\n".join(f"| {h.get('member', 1)} | {h['epoch']} | {h['loss']:.4f} | {h['auc']:.4f} | {h['val_auc']:.4f} |"
                        for h in meta["training"]["history"])
    return ("## Per-epoch history\n| member | epoch | loss | train AUC | validation AUC |\n|---|---|---|---|---|\n"
            f"{history}\n")


def _stability_sentence(checks: dict, limits: dict) -> str:
    if checks.get("stable", checks["shap_stability"] >= limits["shap_stability_at_least"]):
        return (f"SHAP's top words are stable (at least {limits['shap_stability_at_least']} shared under another "
                "seed).")
    return (f"SHAP's top words are **noisy** on these notes (below {limits['shap_stability_at_least']} shared under "
            "another seed): long notes spread the evidence over many words, so read the colours as a guide to the "
            "kind of words that matter, not as a ranking, and use LIME beside them.")


def explanation_checks_section(checks: dict[str, Any] | None) -> str:
    """The sanity checks of the explanations and the agreement of the two explainers (training.explanation_checks)."""
    if not checks:
        return ""
    if checks["kind"] == "xray":
        limits = checks["thresholds"]
        rows = "\n".join(f"| down to {r['randomized_down_to']} | {r['rank_correlation']:.3f} | {r['ssim']:.3f} | "
                         f"{'yes' if r['passes'] else '**no**'} |" for r in checks["cascading_randomization"])
        shuffled, agreement = checks["shuffled_labels"], checks["agreement"]
        rho, overlap = agreement["rank_correlation"], agreement["top_10pct_overlap"]
        return f"""
## Do the heatmaps explain the model? (sanity checks, measured {checks['measured_at']})
Grad-CAM of the trained model against Grad-CAM of copies whose weights were re-drawn from their initialisers block by
block from the top (cascading randomisation, Adebayo et al. 2018), on {checks['films_for_randomisation']} films of
{agreement['source']}; medians over the films. A map still like the trained one would be explaining the film, not
the model: each step must stay below rank correlation {limits['rank_correlation_below']} and SSIM
{limits['ssim_below']}.

| weights randomised | rank correlation | SSIM | passes |
|---|---|---|---|
{rows}
{_flat_note(checks)}
A network of the same architecture trained on shuffled labels (small run): rank correlation
{shuffled['rank_correlation']:.3f}, SSIM {shuffled['ssim']:.3f}: {'passes' if shuffled['passes'] else '**fails**'}.

Second explainer: occlusion ({agreement['occlusion']}) beside Grad-CAM on all {agreement['films']} films of the
choosing part: rank correlation median {rho['median']:.2f} (IQR {rho['iqr'][0]:.2f} to {rho['iqr'][1]:.2f}); their
hottest 10 % of the film shared (IoU) median {overlap['median']:.2f} (IQR {overlap['iqr'][0]:.2f} to
{overlap['iqr'][1]:.2f}).
"""
    limits, agreement = checks["thresholds"], checks["agreement"]["shap_lime_top_k_overlap"]
    return f"""
## Do the word colours explain the model? (sanity checks, measured {checks['measured_at']})
SHAP's top {checks['top_k']} words for the predicted class on {checks['notes']} notes ({checks['source']}), compared
with the same for a model whose weights were shuffled and for a linear model trained on shuffled labels (Adebayo et
al. 2018). Mean overlap with the randomised weights {checks['randomized_weights_overlap']:.2f}, with the
shuffled-label model {checks.get('shuffled_labels_overlap', float('nan')):.2f} (each must be below
{limits['randomized_overlap_below']} and at most half of SHAP's agreement with itself under another seed,
{checks['shap_stability']:.2f}): {'passes' if checks['passes'] else '**fails**'}. {_stability_sentence(checks, limits)}

Second explainer: LIME beside SHAP, top {checks['agreement']['top_k']} words shared: median
{agreement['median']:.2f} (IQR {agreement['iqr'][0]:.2f} to {agreement['iqr'][1]:.2f}) on the same notes.
"""


NOTES_DATA = {
    "medical_abstracts": ("Medical Abstracts Text Classification corpus (Schopf, Braun, Matthes, *Evaluating "
                          "Unsupervised Text Classification: Zero-shot and Similarity-based Approaches*, NLPIR "
                          "2022; sebischair/Medical-Abstracts-TC-Corpus), its published test file, licence "
                          "CC BY-SA 3.0. Labels mapped from ids 1-5 to category names."),
    "symptom2disease": ("Symptom2Disease (public data set of patient symptom descriptions for 24 diseases), "
                        "as redistributed in t4ai/nlp-medical-diagnosis-classifier."),
}


def _metric_rows(name: str, m: dict[str, Any]) -> str:
    return f"| {name} | {m['n']} | {m['accuracy']:.4f} | {m['macro_f1']:.4f} | {m['ece']:.4f} |"


def _notes_network(meta: dict[str, Any]) -> str:
    training, options = meta["training"], meta["options"]
    if options.get("arch") == "linear":
        linear = meta["linear"]
        scores = ", ".join(f"C = {c}: {f1:.4f}" for c, f1 in sorted(linear["cv_macro_f1"].items(), key=lambda item: float(item[0])))
        return (f"Model: multinomial logistic regression on the features (scikit-learn L-BFGS, class weights "
                f"{options['class_weighting']}), C = {linear['C']} chosen by 5-fold cross-validated macro-F1 on the "
                f"training notes ({scores}){_vocabulary_note(linear)}; carried as one Keras Dense layer, "
                f"{training['parameters']:,} parameters.{_refit_note_notes(meta)}")
    arch = options.get("arch", "mlp")
    width = options.get("width", 64)
    network = {"mlp": f"Dense({options['hidden']}, ReLU) → dropout {options['dropout']} → Dense({len(meta['labels'])}) "
                      "on the sparse features",
               "bigru": f"word embedding ({width}) → bidirectional GRU ({width // 2} per direction) → mean over the "
                        f"words → Dense({len(meta['labels'])}), trained from scratch with word dropout "
                        f"{options.get('word_dropout')} to [MASK]",
               "transformer": f"word + position embedding ({width}) → adjacent word pairs averaged → one Transformer "
                              f"encoder block (1 head, feed-forward {2 * width}) → mean → Dense({len(meta['labels'])}), "
                              f"trained from scratch with word dropout {options.get('word_dropout')} to [MASK]"}[arch]
    learning_rate = training.get("learning_rate") or options["learning_rate"]
    return (f"Network: {network}, {training['parameters']:,} parameters; Adam {learning_rate}, batch "
            f"{options['batch_size']}, class weights {options['class_weighting']}; best of {len(training['history'])} "
            f"epochs by validation macro-F1 (epoch {training['best_epoch']}, patience {options['patience']}).")


ARCH_NAMES = {"linear": "linear model", "mlp": "MLP", "bigru": "BiGRU", "transformer": "Transformer"}


def _features_line(meta: dict[str, Any]) -> str:
    if meta["options"].get("arch") in ("bigru", "transformer"):
        return (f"Input: the note's first 512 words as ids of a {meta['training']['n_features']:,}-word vocabulary "
                "(words in at least 2 training notes; 0 padding, 1 unknown, 2 [MASK]), fitted on the training part.")
    return (f"Features: TF-IDF (sublinear TF, L2) of word unigrams, word bigrams and character 3-5-grams of words,\n"
            f"  {meta['training']['n_features']:,} features kept by document frequency (min 2), fitted on "
            f"{'all the notes' if _refitted(meta) else 'the training part'}.")


def architectures_section(table: dict[str, Any] | None) -> str:
    """The architectures compared by k-fold cross-validation of the whole recipe (benchmarks/notes_architectures.py)."""
    if not table:
        return ""
    ranked = sorted(table["rows"].items(), key=lambda r: -r[1]["macro_f1"]["mean"])
    singles = [(n, r) for n, r in ranked if len(r["members"]) == 1]
    ensembles = [(n, r) for n, r in ranked if len(r["members"]) > 1][:3]

    def row(name: str, r: dict[str, Any]) -> str:
        f1, acc, ece = r["macro_f1"], r["accuracy"], r["ece"]
        seconds = f"{r['train_seconds']['mean']:.0f}" if r.get("train_seconds") else "sum of members"
        paired = r.get("paired_vs_best_single", {"mean": 0.0, "sd": 0.0})
        return (f"| {ARCH_NAMES.get(name, name)} | {f1['mean']:.4f} ± {f1['sd']:.4f} ({f1['min']:.3f}-{f1['max']:.3f})"
                f" | {paired['mean']:+.4f} ± {paired['sd']:.4f} | {acc['mean']:.4f} ± {acc['sd']:.4f} | "
                f"{ece['mean']:.4f} ± {ece['sd']:.4f} | {seconds} |")

    return f"""
## Architectures compared ({table['folds']}-fold cross-validation on the training CSV)
`{table['command']}`: every fold runs the whole training recipe (inner validation split, early stopping,
calibration) on {table['folds'] - 1} parts and scores the held-out part; mean ± standard deviation over the folds
(range of macro-F1 in brackets). All models see the same folds, so the paired difference (per fold, from the
best single architecture) is the fairer comparison. Ensembles average the members' calibrated probabilities;
the three best of every combination are shown (chosen after the fact, so slightly optimistic).

| model | macro-F1 | paired difference from the best single | accuracy | ECE | training s per fold |
|---|---|---|---|---|---|
{chr(10).join(row(n, r) for n, r in singles)}
{chr(10).join(row(n, r) for n, r in ensembles)}

{_architecture_decision(table, ensembles[0] if ensembles else None)}
"""


def _architecture_decision(table: dict[str, Any], best_ensemble: tuple[str, dict[str, Any]] | None) -> str:
    """Ship the best single architecture unless an ensemble beats it by more than two standard errors (paired)."""
    single = ARCH_NAMES.get(table["best_single"], table["best_single"])
    if best_ensemble is None:
        return f"Best single architecture: {single}."
    name, row = best_ensemble
    paired = row["paired_vs_best_single"]
    margin = 2 * paired["sd"] / table["folds"] ** 0.5
    verdict = ("better beyond fold-to-fold noise: ship the ensemble" if paired["mean"] > margin else
               f"not better beyond fold-to-fold noise (two standard errors: {margin:.4f}), so the {single} ships")
    return f"Best single architecture: {single}. Best ensemble, {name}: {paired['mean']:+.4f} per fold, {verdict}."


def _refitted(meta: dict[str, Any]) -> bool:
    return bool(meta.get("linear", {}).get("refit_on_all"))


def _held_out_logits(meta: dict[str, Any]) -> str:
    return "every note's out-of-fold logits" if _refitted(meta) else "validation logits"


def _refit_note_notes(meta: dict[str, Any]) -> str:
    if not meta["linear"].get("refit_on_all"):
        return ""
    return (f" After that choice the model was refitted on all {meta['data']['n_train']} notes (training and "
            f"validation); the calibration map and the prediction-set quantiles were fitted on every note's "
            f"{meta['linear']['out_of_fold_folds']}-fold out-of-fold logits (as scikit-learn's "
            "CalibratedClassifierCV(ensemble=False)), and the validation figures below are the validation notes' "
            "out-of-fold predictions, from models that never saw them.")


def _vocabulary_note(linear: dict[str, Any]) -> str:
    tried = linear.get("vocabulary_cv")
    if not tried or len(tried) < 2:
        return ""
    return "; vocabulary size chosen the same way (" + ", ".join(f"{k} features: {v:.4f}" for k, v in tried.items()) + ")"


def _notes_calibration(meta: dict[str, Any]) -> str:
    calibration = meta.get("calibration")
    if not calibration:
        return f"temperature scaling on validation logits (T = {meta['temperature']:.3f})."
    report = meta["metrics"]["validation"].get("calibration_cv", {})
    scores = "; ".join(f"{m}: log-loss {r['cv_log_loss']:.4f}, ECE {r['cv_ece']:.4f}, macro-F1 {r['cv_macro_f1']:.4f}"
                       for m, r in sorted(report.items(), key=lambda item: item[1]["cv_log_loss"]))
    name = {"vector": "vector scaling (a scale and an offset per class, Guo et al. 2017)",
            "top_label": "class-wise top-label calibration (Gupta & Ramdas 2022: a Platt map of the confidence for "
                         "each predicted class with enough validation notes, a shared one otherwise; the decision "
                         "is kept)",
            "temperature": f"temperature scaling (T = {calibration.get('temperature', 0):.3f})"}[calibration["method"]]
    return (f"{name}, fitted on {_held_out_logits(meta)}. Chosen by the lowest 5-fold cross-validated log-loss within "
            f"them among the maps that keep the model's decision (vector scaling moves decisions towards "
            f"frequent classes, so it is measured, not chosen): {scores}.")


def _ece_steps(val: dict[str, Any]) -> str:
    return f", calibrated {val['ece']:.4f} (in-sample: the same notes fitted the map)"


def _baseline_name(meta: dict[str, Any]) -> str:
    baseline = meta.get("baseline")
    return f"{baseline['model']}, C = {baseline['C']}" if baseline else "TF-IDF(1-2) + logistic regression baseline"


def _baseline_tuning(meta: dict[str, Any]) -> str:
    baseline = meta.get("baseline")
    if not baseline:
        return "the baseline was not tuned on it beyond a fixed C = 4."
    scores = ", ".join(f"C = {c}: {f1:.4f}" for c, f1 in sorted(baseline["cv_macro_f1"].items(), key=lambda item: float(item[0])))
    return (f"the baseline's C was chosen by {baseline['folds']}-fold cross-validated macro-F1 on the training "
            f"notes only ({scores}).")


def _confidence_note(meta: dict[str, Any]) -> str:
    confidence, sets = meta.get("confidence"), meta.get("conformal")
    if sets:
        check = sets["held_out_check"]
        per_class = ", ".join(f"{label} {coverage:.0%}" for label, coverage in check["coverage_per_class"].items())
        level = (f"at level {sets['level']:.2f}, chosen as {sets['level_rule']} (target {sets['target']:.2f}; a level "
                 f"equal to the target fell short of it on notes no model had seen)" if "level_rule" in sets
                 else f"for {sets['level']:.0%} coverage per class")
        spread = (f" (10th to 90th percentile {check['coverage_range'][0]:.1%} to {check['coverage_range'][1]:.1%})"
                  if "coverage_range" in check else "")
        refit = (f" Refitted with `{sets['refit']['command']}` on {sets['refit']['at']} (level before: "
                 f"{sets['refit']['previous_level']:.2f}); weights and calibration unchanged." if sets.get("refit") else "")
        return (f"- Prediction sets (split conformal, class-conditional): the page names every class whose score is "
                f"within that class's quantile, fitted on {sets['fitted_on']} {level}; one class reads \"most likely "
                f"A\", more \"one of A, B\" (this replaces the \"uncertain\" rule). Measured on held-out halves of "
                f"those notes (median of {check['repeats']} stratified half-splits): coverage {check['coverage']:.1%}"
                f"{spread}, the least-covered class {check['lowest_class_coverage']:.1%}, mean set size "
                f"{check['mean_set_size']:.2f}, one class for {check['singletons']:.0%} of notes. Per class: "
                f"{per_class}.{refit}")
    if not confidence:
        return ""
    return (f"- \"Uncertain\": when the top class's calibrated probability is below {confidence['threshold']:.3f}, the "
            f"page says \"uncertain\" instead of \"most likely\". Chosen on {_held_out_logits(meta)} so that at least "
            f"{confidence['min_precision']:.0%} of the findings shown are correct ({confidence['precision']:.1%} "
            f"there); coverage: {confidence['coverage']:.1%} of those notes get a finding.")


def notes_model_card(meta: dict[str, Any]) -> str:
    val, base = meta["metrics"]["validation"], meta["metrics"]["baseline_validation"]
    training, data, options = meta["training"], meta["data"], meta["options"]
    per_class = "\n".join(f"| {label} | {val['per_class_f1'][label]:.3f} | {base['per_class_f1'][label]:.3f} |"
                          for label in meta["labels"])
    return f"""# Model card: MedCore case-note classifier `{meta['version']}` (task `{meta['task']}`)

## Intended use
Suggests the most likely categories for a free-text English note, with calibrated probabilities and the words
that pushed each category up or down (SHAP). Decision support for triage and coding; it does not diagnose.

## Data
- {NOTES_DATA.get(meta['task'], data['source'])}
- File `{data['source']}`, SHA-256 `{data['fingerprint'][:16]}…`; {_notes_split(meta)}
  (stratified split, seed {options['seed']}, fraction {options['val_fraction']});
  {data['dropped_rows']} rows dropped for unusable text. Classes: {', '.join(meta['labels'])}.

## Training
- Command: `{training['command']}`
- {_features_line(meta)}
- {_notes_network(meta)}
- Calibration: {_notes_calibration(meta)}
- Time: {training['seconds']:.0f} s on {training['device']}; TensorFlow {training['tensorflow']}.
{_confidence_note(meta)}

## Validation metrics (same split for both models)
| model | n | accuracy | macro-F1 | ECE |
|---|---|---|---|---|
{_metric_rows(ARCH_NAMES.get(meta['options'].get('arch', 'mlp'), 'MLP') + ' (shipped)', val)}
{_metric_rows(_baseline_name(meta), base)}

ECE of the shipped model: raw {val['ece_uncalibrated']:.4f}{_ece_steps(val)}.

| class | F1 (shipped) | F1 (baseline) |
|---|---|---|
{per_class}

The validation split chose the epoch and the calibration, so the shipped model's figures are slightly optimistic;
{_baseline_tuning(meta)}

{architectures_section(meta.get('architectures'))}
## Explanations
SHAP values from `shap.explainers.Permutation` over the note's words ({_removal(meta)}), as many antithetic
permutations as about 3,000 model calls allow (2 to 16: 16 for a 90-word note, 5 for 250 words), on the log-odds
of each class's calibrated probability; exact for effects additive in the words.
Up to 400 words are explained; later words are held fixed.
{explanation_checks_section(meta.get("explanation_checks"))}

## Limitations
- English only; trained on {'abstracts of medical papers, not bedside notes' if meta['task'] == 'medical_abstracts' else 'short lay descriptions of symptoms, not clinical notes'}.
- Categories overlap (e.g. "general pathological conditions"); a top-3 list is more useful than the top-1.
- {_order_limitation(meta)}
"""


def _removal(meta: dict[str, Any]) -> str:
    if meta["options"].get("arch") in ("bigru", "transformer"):
        return "a word removed becomes the [MASK] id the network saw in training"
    return "a word removed takes its n-grams and bigrams with it"


def _order_limitation(meta: dict[str, Any]) -> str:
    if meta["options"].get("arch") in ("bigru", "transformer"):
        return ("Trained from scratch on a few thousand notes (no pretrained language model can be downloaded "
                "here): word order is modelled, but rare words and phrasings are not.")
    return 'A bag of n-grams: negation ("no fever") is only partly captured through bigrams.'



def _interval(figures: dict[str, Any], key: str, percent: bool = True) -> str:
    value, (low, high) = figures[key], figures["intervals"][key]
    return f"{value:.1%} ({low:.1%}-{high:.1%})" if percent else f"{value:.3f} ({low:.3f}-{high:.3f})"


def figures_row(name: str, figures: dict[str, Any]) -> str:
    """One table row: AUC, accuracy, sensitivity, specificity, ECE, each with its 95 % interval."""
    return (f"| {name} | {figures['n']} | {_interval(figures, 'auc', False)} | {_interval(figures, 'accuracy')} | "
            f"{_interval(figures, 'sensitivity')} | {_interval(figures, 'specificity')} | "
            f"{_interval(figures, 'ece', False)} |")


FIGURES_HEADER = ("| | films | AUC | accuracy | sensitivity | specificity | ECE |\n"
                  "|---|---|---|---|---|---|---|")


def external_section(meta: dict[str, Any]) -> str:
    """New patients, measured (never fitted on) by `medcore evaluate xray --record-external`, on the external
    sample's reporting part (the lockbox) and, for comparing ideas, its choosing part."""
    external, choosing, box = meta.get("external"), meta.get("external_choosing"), meta.get("lockbox")
    if not external and not choosing:
        return ""
    rows = [figures_row("internal validation", (external or choosing)["internal"])]
    if choosing:
        rows.append(figures_row("new patients, choosing part (ideas compared here)", choosing["figures"]))
    if external and external.get("part") == "reporting":
        rows.append(figures_row("**new patients, reporting part (the release's figures)**", external["figures"]))
    elif external:
        rows.append(figures_row("new patients, whole sample (before the lockbox)", external["figures"]))
    uses = ""
    if box:
        listed = "; ".join(f"{u['at']}{' (forced)' if u['forced'] else ''}" for u in box["uses"])
        uses = (f"\nThe reporting part (fingerprint `{box['fingerprint'][:16]}…`) was scored {len(box['uses'])} "
                f"time(s) for this model: {listed}. A second scoring is refused unless forced, and forced ones are "
                "listed here.\n")
        for earlier in box.get("earlier", []):  # another sample's reporting part, scored before this one
            uses += (f"The reporting part of another sample (fingerprint `{earlier['fingerprint'][:16]}…`) was scored "
                     f"{len(earlier['uses'])} time(s) before: "
                     + "; ".join(f"{u['at']}{' (forced)' if u['forced'] else ''}" for u in earlier["uses"]) + ".\n")
    source = (external or choosing)
    return f"""
## New patients (external sample, measured only)
`{source['command']}` on {source['measured_at']}: {source['source']}; children from the same hospital's later test
set, never trained on. Nothing about this model (weights, epoch, calibration, threshold, perturbation strengths) was
fitted on it. The external sample is split once by patient (`medcore/training/lockbox.py`): every idea is compared on
the *choosing* part, and the *reporting* part gives the release's figures; the recipe was still chosen on films from
the same source, so expect somewhat lower figures on patients held back elsewhere. 95 % intervals: Wilson for
proportions, bias-corrected class-stratified bootstrap for AUC and ECE.
{uses}
{FIGURES_HEADER}
{chr(10).join(rows)}
"""


def release_section(release: dict[str, Any] | None) -> str:
    """Why this version ships in place of the previous release, and what it costs: figures on the parts no choice
    was made on, speed measured in one run beside the previous release (benchmarks/xray_release_table.py)."""
    if not release:
        return ""
    previous, speed = release["previous"], release.get("speed")
    mine, theirs = release["figures"], previous["figures"]
    earlier = f"release {release['number'] - 1} (`{previous['version']}`)"
    rows = [figures_row(f"{label}: this release", mine[part]) + "\n" + figures_row(f"{label}: {earlier}", theirs[part])
            for part, label in (("reporting", "**reporting part**"), ("choosing", "choosing part"),
                            ("internal", "internal validation")) if part in mine and part in theirs]
    faster = ""
    if speed:
        study, batch = speed["network_gradcam_ms"], speed["batch_network_images_per_s"]
        faster = (f" It is faster: network and Grad-CAM on one film {study['this']:.2f} ms against "
                  f"{study['previous']:.2f} ms, batches {batch['this']:,.0f} against {batch['previous']:,.0f} images/s, "
                  f"in the same run (`{speed['command']}`, {speed['device']}).")
    ece = {part: (mine[part]["ece"], theirs[part]["ece"]) for part in mine if part in theirs}
    worse = [part for part, (a, b) in ece.items() if a > b]
    costs = (f"ECE is higher on the {' and '.join(worse)} part(s) "
             + ", ".join(f"{ece[p][0]:.3f} against {ece[p][1]:.3f}" for p in worse) if worse else
             "ECE is no higher on any part (" + ", ".join(f"{p} {a:.3f} against {b:.3f}" for p, (a, b) in ece.items())
             + ")")
    sensitivity = mine["internal"]["sensitivity"], theirs["internal"]["sensitivity"]
    return f"""
## Release {release['number']}: why this version ships
It replaces release {release['number'] - 1}, `{previous['version']}` ({previous['description']}), which stays registered
for rollback (`medcore models rollback xray`). It was chosen on the choosing part by the rule stated before it was
trained: {release['rule']}. The reporting part was scored after that choice.{faster}
What it costs: {costs}; internal sensitivity {sensitivity[0]:.3f} against {sensitivity[1]:.3f} at each one's own
threshold; and one network varies more from one training to the next than the mean of three (release 1's card
compares its members on new patients).

{FIGURES_HEADER}
{chr(10).join(rows)}
"""


def federated_comparison_section(results: dict[str, Any] | None) -> str:
    """benchmarks/federated_xray.py: federated against central and each hospital alone, on new patients."""
    if not results or not results.get("rows"):
        return ""
    def paired(row: dict[str, Any]) -> str:
        versus = row.get("auc_vs_central")
        return "–" if not versus else (f"{versus['difference']:+.3f} ({versus['interval'][0]:+.3f} to "
                                       f"{versus['interval'][1]:+.3f})")

    def label(name: str, row: dict[str, Any]) -> str:
        privacy = row.get("privacy")
        return name if not privacy else f"{name}, clipping {privacy['clipping_norm']:.2f} (epsilon {privacy['epsilon']:.0f})"

    rows = "\n".join(
        f"| {label(name, row)} | {_interval(row, 'auc', False)} | {paired(row)} | {_interval(row, 'sensitivity')} | "
        f"{_interval(row, 'specificity')} | {_interval(row, 'ece', False)} | {row['seconds'] / 60:.1f} | "
        + (f"{row['bytes_per_round'] / 1e6:.1f} |" if row.get("bytes_per_round") else "– |")
        for name, row in results["rows"].items())
    n = next(iter(results["rows"].values()))["n"]
    return f"""
## Federated against central training and each hospital alone (new patients)
`{results['command']}`: the same network (one CNN) and the same passes over each film ({results['rounds']} rounds
of one local epoch = {results['rounds']} epochs), scored on the {n} films of the external sample (new patients,
never trained or tuned on); 95 % intervals (the AUC difference from central training: paired bootstrap over the same
films). Sensitivity and specificity are at each model's own threshold.

| model | AUC | AUC − central | sensitivity | specificity | ECE | minutes to train and score (2 CPU cores) | MB sent per round |
|---|---|---|---|---|---|---|---|
{rows}
"""


def local_validation_section(meta: dict[str, Any]) -> str:
    """What a locally recalibrated version was fitted on and what it achieves there."""
    local = meta["local_validation"]
    warnings = "".join(f"\n> **Warning:** {w}\n" for w in local["warnings"])
    scores = ", ".join(f"{k} {v:.4f}" for k, v in local.get("cv_ece", local["cv_log_loss"]).items())
    return f"""
## Local validation
Version `{meta['version']}` is version `{local['based_on']}` with the same weights and a new calibration and
threshold, fitted on local films (`medcore calibrate xray`, {local['measured_at']}).
- Local films: folder `{local['source']}`, fingerprint `{local['fingerprint'][:16]}…`: {local['n_normal']} NORMAL,
  {local['n_pneumonia']} PNEUMONIA ({local['n_unreadable']} unreadable, {local['n_atypical']} atypical but scored).
- Calibration chosen by {local['folds']}-fold cross-validated {'ECE' if 'cv_ece' in local else 'log-loss'} ({scores}):
  **{local['method']}**.
- Threshold: {meta['threshold']:.4f}, {meta['threshold_rule']}.
{warnings}
"Before" is the base version as it was; "after" is cross-validated (each film judged by a map and threshold
fitted on the other folds), so it is what the next local patients can expect.

{FIGURES_HEADER}
{figures_row("before (base version)", local['before'])}
{figures_row("after (cross-validated)", local['after'])}
"""
