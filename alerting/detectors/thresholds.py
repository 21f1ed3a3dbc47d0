"""The clinical threshold table beyond blood pressure: glucose (ADA) and NEWS2 vital signs.

Each rule cites where its default comes from; hysteresis margins and confirmation windows
that no guideline fixes are marked as wardwatch's own choice. These are screening limits
for a nurse's attention, to be reviewed by each deployment's clinical lead.

Rules read one kind each, so a glucose meter (``glucose``, a single capillary reading)
and a CGM (``cgm_glucose``, a reading every 1-5 minutes) have their own rule ids; both
read the same threshold parameter, so one care-plan entry (``{"glucose.hypo.level1": 72}``)
moves the limit for both.
"""

from __future__ import annotations

from datetime import timedelta

from alerting.rules import (
    DEFAULT_RULES,
    SPO2_SCALE,
    Confirmation,
    Criterion,
    ThresholdRule,
)

# American Diabetes Association. Standards of Care in Diabetes-2025, section 6
# "Glycemic Goals and Hypoglycemia" (Diabetes Care 2025;48(Suppl 1):S128-S145), table 6.4
# (unchanged from 2024): level 1 hypoglycaemia < 70 mg/dL and >= 54 mg/dL; level 2 < 54 mg/dL;
# time above range: level 1 > 180 mg/dL, level 2 > 250 mg/dL (CGM metrics, table 6.2).
_ADA = "ADA Standards of Care in Diabetes 2024/2025, section 6 (tables 6.2, 6.4)"

# CGM events: "a CGM-detected hypoglycaemic or hyperglycaemic event needs >= 15 consecutive
# minutes" beyond the limit (Battelino T et al., "Continuous glucose monitoring and metrics
# for clinical trials: an international consensus statement", Lancet Diabetes Endocrinol
# 2023;11:42-57; Danne T et al., Diabetes Care 2017;40:1631-40). A reading gap over 15
# minutes breaks the run (wardwatch's choice: one missed 5-minute reading is tolerated).
_CGM_EVENT = Confirmation(minutes=15.0, max_gap=timedelta(minutes=15))
_CGM = "international CGM consensus (Battelino 2023, Danne 2017): >= 15 consecutive minutes"

# Clearing margins (wardwatch's choice): a level-2 low ends back at 70 mg/dL, the level-1
# limit, as the consensus ends an event; highs clear 20 mg/dL under their limit, about the
# spread of repeated meter readings (ISO 15197: +/-15 mg/dL under 100 mg/dL).
_HYPO_1 = Criterion("glucose.hypo.level1", None, "below", 70.0, 5.0)
_HYPO_2 = Criterion("glucose.hypo.level2", None, "below", 54.0, 16.0)
_HYPER_1 = Criterion("glucose.hyper.level1", None, "above", 180.0, 20.0)
_HYPER_2 = Criterion("glucose.hyper.level2", None, "above", 250.0, 20.0)

GLUCOSE_RULES: tuple[ThresholdRule, ...] = (
    ThresholdRule(
        "glucose.hypo.level2",
        "glucose",
        "Hypoglycaemia level 2",
        "urgent",
        (_HYPO_2,),
        f"{_ADA}: level 2 < 54 mg/dL",
    ),
    ThresholdRule(
        "glucose.hypo.level1",
        "glucose",
        "Hypoglycaemia level 1",
        "warning",
        (_HYPO_1,),
        f"{_ADA}: level 1 < 70 mg/dL",
    ),
    ThresholdRule(
        "glucose.hyper.level2",
        "glucose",
        "Hyperglycaemia level 2",
        "warning",
        (_HYPER_2,),
        f"{_ADA}: > 250 mg/dL",
    ),
    # A single meter reading above 180 mg/dL is common after a meal (ADA's postprandial goal
    # is < 180 mg/dL 1-2 h after a meal): two consecutive readings, within 24 h, make it
    # persistent (repeat count: wardwatch's choice).
    ThresholdRule(
        "glucose.hyper.level1",
        "glucose",
        "Hyperglycaemia level 1",
        "info",
        (_HYPER_1,),
        f"{_ADA}: > 180 mg/dL; 2 consecutive readings (wardwatch)",
        confirm=Confirmation(readings=2, max_gap=timedelta(hours=24)),
    ),
    ThresholdRule(
        "glucose.cgm.hypo.level2",
        "cgm_glucose",
        "CGM hypoglycaemia level 2",
        "urgent",
        (_HYPO_2,),
        f"{_ADA}: level 2 < 54 mg/dL; {_CGM}",
        confirm=_CGM_EVENT,
    ),
    ThresholdRule(
        "glucose.cgm.hypo.level1",
        "cgm_glucose",
        "CGM hypoglycaemia level 1",
        "warning",
        (_HYPO_1,),
        f"{_ADA}: level 1 < 70 mg/dL; {_CGM}",
        confirm=_CGM_EVENT,
    ),
    ThresholdRule(
        "glucose.cgm.hyper.level2",
        "cgm_glucose",
        "CGM hyperglycaemia level 2",
        "warning",
        (_HYPER_2,),
        f"{_ADA}: > 250 mg/dL; {_CGM}",
        confirm=_CGM_EVENT,
    ),
    ThresholdRule(
        "glucose.cgm.hyper.level1",
        "cgm_glucose",
        "CGM hyperglycaemia level 1",
        "info",
        (_HYPER_1,),
        f"{_ADA}: > 180 mg/dL; {_CGM}",
        confirm=_CGM_EVENT,
    ),
)

# Royal College of Physicians. National Early Warning Score (NEWS) 2: Standardising the
# assessment of acute-illness severity in the NHS. London: RCP, 2017, chart 1. A single
# parameter in its red band (score 3) calls for an urgent ward-based response (chart 2,
# "low-medium"); these rules alert on those bands one vital at a time, so a patient with
# only a pulse oximeter is covered too. The NEWS2 aggregate is alerting.detectors.news2.
# Temperature's top band (>= 39.1 degC) scores 2, its bottom band (<= 35.0 degC) 3; the
# 38.1-39.0 band (score 1) is the usual fever limit (> 38.0 degC) and is an info alert.
# Chart values are whole numbers (one decimal for temperature): "<= 91" is "< 92" here.
# Clearing margins are wardwatch's choice (about one chart band).
_NEWS2 = "RCP NEWS2 2017, chart 1"

VITAL_SIGN_RULES: tuple[ThresholdRule, ...] = (
    ThresholdRule(
        "spo2.low",
        "spo2",
        "Low oxygen saturation",
        "warning",
        (Criterion("spo2.low", None, "below", 92.0, 2.0),),
        f"{_NEWS2}: SpO2 scale 1 <= 91% scores 3",
        when=(SPO2_SCALE, 1.0),
    ),
    ThresholdRule(
        "spo2.low.scale2",
        "spo2",
        "Low oxygen saturation (scale 2)",
        "warning",
        (Criterion("spo2.low.scale2", None, "below", 84.0, 2.0),),
        f"{_NEWS2}: SpO2 scale 2 (hypercapnic respiratory failure) <= 83% scores 3",
        when=(SPO2_SCALE, 2.0),
    ),
    ThresholdRule(
        "heart_rate.high",
        "heart_rate",
        "High pulse rate",
        "warning",
        (Criterion("heart_rate.high", None, "above", 130.0, 10.0),),
        f"{_NEWS2}: pulse >= 131/min scores 3",
    ),
    ThresholdRule(
        "heart_rate.low",
        "heart_rate",
        "Low pulse rate",
        "warning",
        (Criterion("heart_rate.low", None, "below", 41.0, 5.0),),
        f"{_NEWS2}: pulse <= 40/min scores 3",
    ),
    ThresholdRule(
        "respiratory_rate.high",
        "respiratory_rate",
        "High respiratory rate",
        "warning",
        (Criterion("respiratory_rate.high", None, "above", 24.0, 3.0),),
        f"{_NEWS2}: respiration rate >= 25/min scores 3",
    ),
    ThresholdRule(
        "respiratory_rate.low",
        "respiratory_rate",
        "Low respiratory rate",
        "warning",
        (Criterion("respiratory_rate.low", None, "below", 9.0, 2.0),),
        f"{_NEWS2}: respiration rate <= 8/min scores 3",
    ),
    ThresholdRule(
        "temperature.low",
        "body_temperature",
        "Low body temperature",
        "warning",
        (Criterion("temperature.low", None, "below", 35.1, 0.3),),
        f"{_NEWS2}: temperature <= 35.0 degC scores 3",
    ),
    ThresholdRule(
        "temperature.high",
        "body_temperature",
        "High fever",
        "warning",
        (Criterion("temperature.high", None, "above", 39.0, 0.3),),
        f"{_NEWS2}: temperature >= 39.1 degC scores 2 (the chart's top band)",
    ),
    ThresholdRule(
        "temperature.fever",
        "body_temperature",
        "Fever",
        "info",
        (Criterion("temperature.fever", None, "above", 38.0, 0.3),),
        f"{_NEWS2}: temperature 38.1-39.0 degC scores 1",
    ),
)

CLINICAL_RULES: tuple[ThresholdRule, ...] = (*DEFAULT_RULES, *GLUCOSE_RULES, *VITAL_SIGN_RULES)
"""Every default threshold rule: blood pressure, glucose, NEWS2 single parameters."""

__all__ = ["CLINICAL_RULES", "GLUCOSE_RULES", "VITAL_SIGN_RULES"]
