/*
 * One-line descriptions of the stable rule ids, for SARIF's
 * tool.driver.rules[].shortDescription. The descriptions in the loaded rule
 * files take precedence. This list also covers the ids that the readers, the
 * command and the reference comparison raise outside any rule file.
 */
#include "report/report.h"

#include <string.h>

struct rule_text {
    const char *rule;
    const char *description;
};

static const struct rule_text rule_texts[] = {
    {"layout.missing", "A tensor the model layout requires is absent"},
    {"layout.unexpected", "A tensor is not part of the model layout"},
    {"layout.shape", "A tensor's shape differs from the shape the config implies"},
    {"layout.dtype", "A tensor's dtype is not one the layout allows"},
    {"layout.tie", "lm_head and the embedding disagree with tie_word_embeddings"},
    {"layout.family", "The config names a model type that no layout describes"},
    {"values.nonfinite", "A floating-point tensor holds NaN or Inf"},
    {"ternary.values", "A group of a ternary tensor holds values other than -s, 0 and +s"},
    {"ternary.scale", "A ternary group's scale is not positive, finite and normal, or is an outlier"},
    {"ternary.groups", "The group structure the values show differs from the rule's group size"},
    {"stage.mismatch", "The detected checkpoint stage differs from the asserted one"},
    {"security.unsafe-global", "The pickle names a global that could execute code"},
    {"security.unknown-global", "The pickle names a global outside the allowed set"},
    {"format.index-total-size", "A shard index's total_size differs from the tensors it maps"},
    {"format.unreadable", "A checkpoint or the reference could not be read or checked to the end"},
    {"format.crc", "A stored zip entry's bytes do not match its CRC-32"},
    {"report.unwritable", "A --junit or --sarif report file could not be written"},
    {"audit.unwritable", "The run could not be recorded in the audit database"},
    {"quant.eps-floor", "Groups of a latent ternary tensor whose export scale would sit at eps"},
    {"reference.codes", "Ternary codes differ from the fake-quant of the latent weights"},
    {"reference.scale", "A group's scale differs from the recomputed one beyond the tolerance"},
    {"reference.boundary", "Tie elements where the float32 and bf16 compute policies disagree"},
    {"reference.missing", "A tensor exists in only one of the checkpoint and its reference"},
    {"reference.changed", "A non-ternary tensor differs between the checkpoint and its reference"},
};

const char *bcpm_report_rule_description(const struct bcpm_report_options *options,
                                         const char *rule)
{
    if (!rule)
        return NULL;
    for (size_t i = 0; options && options->rule_descriptions && i < options->nrules; i++) {
        const char *text = options->rule_descriptions[i];
        if (strcmp(options->rules[i], rule) == 0 && text && *text)
            return text;
    }
    for (size_t i = 0; i < sizeof(rule_texts) / sizeof(rule_texts[0]); i++) {
        if (strcmp(rule_texts[i].rule, rule) == 0)
            return rule_texts[i].description;
    }
    return NULL;
}
