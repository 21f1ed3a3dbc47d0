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

# -- slow blood-pressure rise over weeks ----------------------------------------------------
# The rate and length are the scenario's design (issue 8: +1 to +2 mmHg/day over 3-4 weeks).
# For scale: one standard-dose antihypertensive lowers systolic by about 9 mmHg (Law MR,
# Morris JK, Wald NJ, "Use of blood pressure lowering drugs in the prevention of
# cardiovascular disease", BMJ 2009;338:b1665), so a 20-40 mmHg rise over weeks is what
# stopping two or three drugs (non-adherence) or starting an NSAID looks like at home.
BP_RISE_PER_DAY = (1.0, 2.0)
BP_RISE_DAYS = (21, 28)
# Starts well controlled (ESH 2021 home target < 135/85, Stergiou 2021 above) so that the
# rise stays under the crisis limit; the rise is capped so that the level plus the largest
# noise (clipped at 2.5 SD) stays <= BP_RISE_CEILING (a trend, not a crisis, is measured).
BP_RISE_BASELINE_SYSTOLIC = (108.0, 120.0)
BP_RISE_CEILING = 180.0
# The ~8 mmHg total SD of home systolic (Juhanoja 2017) split into the day's level (day to
# day) and the reading (within the day, morning vs evening); the split is an assumption.
# Morning home BP runs a few mmHg above the evening in treated patients (the morning surge;
# Kario K, "Morning surge in blood pressure", Hypertension 2010;56:765-73): +3 here.
BP_DAY_LEVEL_SD = 6.0
BP_READING_SD = 5.0
BP_MORNING_EXCESS = 3.0
# Diastolic follows systolic at about half its rise (an assumption; pulse pressure widens).
BP_RISE_DIASTOLIC_FRACTION = 0.5

# -- tachycardia ----------------------------------------------------------------------------
# A wearable patch reporting resting heart rate every 10 minutes (an assumption about the
# device; consumer wearables report every 1-15 min). Resting HR dips at night by about
# 5-10/min (an assumption, consistent with Quer 2020 above). NEWS2 scores a pulse >= 131/min
# 3 points (RCP, National Early Warning Score 2, 2017, chart 1). A paroxysm of atrial
# fibrillation with rapid ventricular response (rates usually 110-160+/min, Hindricks G et
# al., 2020 ESC AF guideline, Eur Heart J 2021;42:373-498) is the model: abrupt onset,
# irregular rate (larger reading-to-reading spread), self-terminating within hours to a day
# (paroxysmal AF ends within 7 days by definition, most within 48 h, same source).
WEARABLE_HR_MINUTES = 10
HR_NIGHT_DIP = 7.0
TACHY_PEAK = (140.0, 165.0)
TACHY_HOURS = (4.0, 30.0)
TACHY_ONSET_MINUTES = (5.0, 20.0)
TACHY_SD = 7.0
TACHY_AT = 130.0

# -- CGM glucose (type 1 diabetes) ----------------------------------------------------------
# CGM every 5 minutes; sensor error as a relative error with a mean absolute relative
# difference (MARD) of ~9-10 % (Shah VN et al., Dexcom G6 accuracy, Diabetes Technol Ther
# 2018;20:428-33), mostly a slowly wandering bias (AR(1), phi 0.97 per 5 min: hours; an
# assumption — reading-to-reading jitter of a few mg/dL, as CGM traces show), integer mg/dL
# in the sensor's 40-400 range.
CGM_MINUTES = 5
CGM_MARD = 0.095
CGM_ERROR_PHI = 0.97
CGM_RANGE = (40.0, 400.0)
# Fasting/between-meal level of a treated T1D patient, and its slow wander (AR(1) with a
# 3-hour time constant; assumption). ADA Standards of Care 2024 §6: pre-meal target 80-130.
GLUCOSE_BASE = (100.0, 140.0)
GLUCOSE_WANDER_SD = 12.0
GLUCOSE_WANDER_HOURS = 3.0
# Meals: breakfast, lunch, dinner; the rise peaks about 60 min after the start of the meal
# and returns to the pre-meal level within 2-3 h (American Diabetes Association,
# "Postprandial blood glucose", Diabetes Care 2001;24:775-8). In T1D the excursion depends
# on the bolus (missed or late bolus: large); 40-170 mg/dL here, so some meals pass 180.
MEAL_HOURS = (7.5, 12.5, 19.0)
MEAL_PEAK_MINUTES = (55.0, 90.0)
MEAL_LENGTH_HOURS = (2.5, 4.0)
MEAL_RISE = (40.0, 170.0)
# Nocturnal hypoglycaemia: CGM found glucose <= 60 mg/dL for >= 20 min on 8.5 % of nights,
# often lasting over an hour (JDRF CGM Study Group, "Prolonged nocturnal hypoglycemia is
# common during 12 months of continuous glucose monitoring in children and adults with type 1
# diabetes", Diabetes Care 2010;33:1004-8). The scenario enriches it (one sure night per
# patient plus 15 % of the others) so that a two-week feed has episodes to score.
NIGHT_HYPO_P = 0.15
NIGHT_HYPO_ONSET_HOURS = (0.5, 4.5)
NIGHT_HYPO_FALL_MINUTES = (40.0, 90.0)
NIGHT_HYPO_LENGTH_HOURS = (1.5, 3.5)
NIGHT_HYPO_NADIR = (42.0, 64.0)
# Episode definitions on the true glucose: international consensus on CGM (Danne T et al.,
# Diabetes Care 2017;40:1631-40; Battelino T et al., Diabetes Care 2019;42:1593-603):
# < 70 (level 1) and > 180 mg/dL for >= 15 min; the episode ends after >= 15 min back.
HYPO_BELOW = 70.0
HYPER_ABOVE = 180.0
EPISODE_MIN_MINUTES = 15

# -- device and hub faults ------------------------------------------------------------------
# A device going silent (flat battery, left in a drawer) for 3-6 days before the patient
# or an outreach call notices; 30 % stay silent to the end of the feed (assumptions; issue 6
# plans an outreach call after 3 days without readings).
SILENT_DAYS = (3.0, 6.0)
SILENT_TO_END_P = 0.3
# A hub offline for about a day (power cut, router down): 20-30 h (issue 8). Home BP
# monitors store their readings (memories of 60-100+ are usual) and hand them over at the
# next connection; spot-check oximeters, thermometers and this scale keep nothing.
HUB_OFFLINE_HOURS = (20.0, 30.0)
# Device clocks: a 32.768 kHz tuning-fork crystal is within +-20 ppm at 25 °C and slows by
# 0.034 ppm/°C² away from it (typical watch-crystal datasheets, e.g. Micro Crystal CM7V-T1A);
# cheap devices without trimming do worse: 20-100 ppm (1.7-8.6 s/day) here. Clocks set by
# hand are minutes off; 2-20 min initial offset, and one manual re-set during the feed
# (the patient "corrects" it from another wrong clock, or a summer-time jump of an hour).
CLOCK_DRIFT_PPM = (20.0, 100.0)
CLOCK_INITIAL_OFFSET_MIN = (2.0, 20.0)
CLOCK_RESET_OFFSET_MIN = (2.0, 60.0)
# The hub reads the device's clock on connection; the measurement reaches it 5-40 s after
# it was taken (cuff deflation, then the BLE transfer; an assumption).
TRANSFER_DELAY_S = (5.0, 40.0)
# Duplicate transmissions: a share of readings sent 2-5 times (re-transfers after a lost
# acknowledgement, a hub re-sending its uplink); corrupted packets: a share of raw values
# damaged (truncated, flags announcing fields the value lacks, a garbled time stamp, noise).
DUPLICATE_P = 0.35
DUPLICATE_COPIES = (2, 5)
CORRUPT_P = 0.15
