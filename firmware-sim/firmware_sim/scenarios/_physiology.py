"""Physiological parameters of the scenarios, each with where it comes from.

These are for making realistic synthetic feeds, not clinical guidance. Figures are
population-level approximations from the cited sources, rounded.
"""

from __future__ import annotations

# -- blood pressure -------------------------------------------------------------------------
# Home BP day-to-day within-patient variability: SD of home systolic about 7-9 mmHg and of
# diastolic about 4-6 mmHg (Juhanoja EP et al., "Outcome-driven thresholds for increased
# home blood pressure variability", Hypertension 2017;69:599-607, Finn-Home cohort;
# Stergiou GS et al., J Hypertens 2021;39:1742-67, ESH practice guidelines on home BP).
BP_SYSTOLIC_DAY_SD = 8.0
BP_DIASTOLIC_DAY_SD = 5.0
# Treated, controlled patients: home mean below 135/85 (ESH 2021 home-BP threshold).
BP_CONTROLLED_SYSTOLIC = (118.0, 134.0)
BP_CONTROLLED_DIASTOLIC = (70.0, 84.0)
# Uncontrolled hypertension, grade 1-2 (ESC/ESH 2018 guideline, Williams B et al.,
# Eur Heart J 2018;39:3021-104, table 3).
BP_UNCONTROLLED_SYSTOLIC = (145.0, 160.0)
BP_UNCONTROLLED_DIASTOLIC = (88.0, 98.0)
# Hypertensive crisis (severe hypertension / emergency): SBP > 180 and/or DBP > 120 mmHg
# (Whelton PK et al., 2017 ACC/AHA guideline, Hypertension 2018;71:e13-e115, section 11.2).
CRISIS_SYSTOLIC = 180.0
CRISIS_DIASTOLIC = 120.0
CRISIS_PEAK_SYSTOLIC = (192.0, 215.0)
CRISIS_PEAK_DIASTOLIC = (112.0, 128.0)
CRISIS_HOURS = (3.0, 10.0)

# -- heart rate -----------------------------------------------------------------------------
# Resting adult heart rate 60-100/min, day-to-day SD about 4-5/min at home measurement
# (Quer G et al., "Inter- and intraindividual variability in daily resting heart rate",
# PLoS One 2020;15:e0227709: intra-individual daily RHR SD ~ 3-5 bpm).
HR_REST = (62.0, 82.0)
HR_DAY_SD = 4.0
# Heart rate rises about 8.5 bpm per 1 °C of fever (Karjalainen J, Viitasalo M, "Fever and
# cardiac rhythm", Arch Intern Med 1986;146:1169-71).
HR_PER_DEG_C = 8.5

# -- body weight ----------------------------------------------------------------------------
# Day-to-day fluctuation of morning weight: SD about 0.3-0.5 kg, with a weekend rise of a
# few tenths (Orsama AL et al., "Weight rhythms", Obes Facts 2014;7:36-47).
WEIGHT_DAY_SD = 0.4
WEIGHT_WEEKEND_KG = 0.2
WEIGHT_BASELINE = (62.0, 98.0)
# Heart-failure decompensation: weight rises in the weeks before hospitalisation, the
# increase accelerating over the final week (Chaudhry SI et al., "Patterns of weight change
# preceding hospitalization for heart failure", Circulation 2007;116:1549-54). The issue
# asks for about 1 kg over the 14 days before the event.
HF_GAIN_KG = (0.8, 1.3)
HF_RISE_DAYS = 14

# -- oxygen saturation ----------------------------------------------------------------------
# Normal SpO2 94-98% in adults; COPD at risk of hypercapnia: target 88-92%, below 88% needs
# action (O'Driscoll BR et al., BTS guideline for oxygen use in adults, Thorax
# 2017;72(Suppl 1):ii1-ii90).
SPO2_NORMAL = (95.0, 98.5)
SPO2_COPD = (91.0, 94.0)
SPO2_DAY_SD = 0.8
COPD_DESATURATION_BELOW = 88.0
# Exacerbation: a fall of several points over one to two days, recovery over days to a week
# (Hurst JR et al., "Domiciliary pulse-oximetry at exacerbation of COPD", BMC Pulm Med
# 2010;10:52; Seemungal TA et al., Am J Respir Crit Care Med 2000;161:1608-13: median
# exacerbation recovery ~7 days).
COPD_DROP = (5.0, 8.0)
COPD_ONSET_HOURS = (18.0, 40.0)
COPD_DAYS = (3.0, 7.0)

# -- temperature ----------------------------------------------------------------------------
# Normal oral temperature mean 36.8 °C, SD 0.4 (Mackowiak PA et al., JAMA 1992;268:1578-80);
# fever >= 38.0 °C (NICE NG143 / IDSA; O'Grady NP et al., Crit Care Med 2008;36:1330-49
# uses 38.3 °C in intensive care). Home thermometer error about ±0.2 °C.
TEMP_NORMAL = (36.5, 37.0)
TEMP_DAY_SD = 0.2
FEVER_AT = 38.0
FEVER_PEAK = (38.6, 39.6)
FEVER_DAYS = (2.0, 4.5)
THERMOMETER_SD = 0.15

# -- adherence ------------------------------------------------------------------------------
# Patients miss some scheduled home measurements; ~85-90% adherence in RPM programmes is
# an assumption here (not from a single source).
ADHERENCE = 0.9
