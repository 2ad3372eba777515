"""The indicators explorer, and the names of the indicators (the progress report uses them)."""

MESSAGES: dict[str, tuple[str, str]] = {
    "indicators.title": ("Indicators", "សូចនាករ"),
    "indicators.lead": (
        "Counts from Komar's records, as the indicators API gives them to you.",
        "ចំនួនពីកំណត់ត្រារបស់កុមារ ដូចដែល API សូចនាករផ្តល់ជូនអ្នក។",
    ),
    "indicators.indicator": ("Indicator", "សូចនាករ"),
    "indicators.area": ("Area", "តំបន់"),
    "indicators.period": ("Period", "រយៈពេល"),
    "indicators.level": ("Places by", "ទីកន្លែងតាម"),
    "indicators.show": ("Show", "បង្ហាញ"),
    "indicators.months": ("Months", "ខែ"),
    "indicators.quarters": ("Quarters", "ត្រីមាស"),
    "indicators.years": ("Years", "ឆ្នាំ"),
    "indicators.so_far": ("{period} (so far)", "{period} (រហូតមកដល់ពេលនេះ)"),
    "indicators.month": ("{month} {year}", "{month} {year}"),
    "indicators.quarter": ("Q{quarter} {year}", "ត្រីមាសទី{quarter} ឆ្នាំ{year}"),
    "indicators.quarter_short": ("Q{quarter}", "ត្រីមាសទី{quarter}"),
    "indicators.definition": ("Definition", "និយមន័យ"),
    "indicators.definition_note": (
        "As the catalogue of the indicators API states it.",
        "ដូចដែលបញ្ជីសូចនាកររបស់ API បានចែង។",
    ),
    "indicators.over_time": ("{indicator} in {area}", "{indicator} នៅ{area}"),
    "indicators.over_time_months": ("Last {count} months", "{count} ខែចុងក្រោយ"),
    "indicators.over_time_quarters": ("Last {count} quarters", "{count} ត្រីមាសចុងក្រោយ"),
    "indicators.over_time_years": ("Last {count} years", "{count} ឆ្នាំចុងក្រោយ"),
    "indicators.total_note": (
        "Each point is the total over every disaggregation.",
        "ចំណុចនីមួយៗ គឺជាចំនួនសរុបនៃការបែងចែកទាំងអស់។",
    ),
    "indicators.distinct_note": (
        "A provider or worker is counted once under each of its {by}: the total over them "
        "is not a count of providers or workers.",
        "អ្នកផ្តល់សេវា ឬបុគ្គលិកម្នាក់ ត្រូវបានរាប់ម្តងក្រោម{by}នីមួយៗរបស់ខ្លួន៖ "
        "ចំនួនសរុបនោះ មិនមែនជាចំនួនអ្នកផ្តល់សេវា ឬបុគ្គលិកទេ។",
    ),
    "indicators.by_place": ("By place, {period}", "តាមទីកន្លែង {period}"),
    "indicators.place": ("Place", "ទីកន្លែង"),
    "indicators.total": ("Total", "សរុប"),
    "indicators.area_total": ("{area} (all)", "{area} (ទាំងអស់)"),
    "indicators.open_place": ("Open {place}", "បើក {place}"),
    "indicators.csv": ("Download this table (CSV)", "ទាញយកតារាងនេះ (CSV)"),
    "indicators.no_area": (
        "Your account has no area the indicators are counted for.",
        "គណនីរបស់អ្នកមិនមានតំបន់ដែលសូចនាករត្រូវបានរាប់នោះទេ។",
    ),
    "indicators.too_many": (
        "{count} places: too many to show here (at most {most}). Download them as CSV, or "
        "pick a smaller area or a higher level.",
        "{count} ទីកន្លែង៖ ច្រើនពេកសម្រាប់បង្ហាញនៅទីនេះ (យ៉ាងច្រើន {most})។ "
        "សូមទាញយកជា CSV ឬជ្រើសរើសតំបន់តូចជាងនេះ ឬកម្រិតខ្ពស់ជាងនេះ។",
    ),
    "indicators.no_rows": ("No places to show.", "គ្មានទីកន្លែងដើម្បីបង្ហាញទេ។"),
    "indicators.csv.place_code": ("Place code", "លេខកូដទីកន្លែង"),
    "indicators.csv.place_name": ("Place name", "ឈ្មោះទីកន្លែង"),
    "indicators.csv.disaggregation": ("Disaggregation", "ការបែងចែក"),
    "indicators.csv.value": ("Value", "តម្លៃ"),
    # disaggregations
    "indicators.by.SEX_AGE": ("sex and age band", "ភេទ និងក្រុមអាយុ"),
    "indicators.by.VULNERABILITY": ("vulnerabilities", "ភាពងាយរងគ្រោះ"),
    "indicators.by.SERVICE_TYPE": ("service types", "ប្រភេទសេវា"),
    "indicators.by.GRANT_CATEGORY": ("grant categories", "ប្រភេទជំនួយ"),
    "indicators.by.WORKER_ROLE": ("roles", "តួនាទី"),
    "indicators.by.VISIT_KIND": ("visit kinds", "ប្រភេទនៃការចុះសួរសុខទុក្ខ"),
    "indicators.age.Y0_4": ("0–4 years", "0–4 ឆ្នាំ"),
    "indicators.age.Y5_9": ("5–9 years", "5–9 ឆ្នាំ"),
    "indicators.age.Y10_14": ("10–14 years", "10–14 ឆ្នាំ"),
    "indicators.age.Y15_17": ("15–17 years", "15–17 ឆ្នាំ"),
    # the indicators of the catalogue
    "indicators.name.CP_CHILD_REG": ("Children newly registered", "កុមារចុះឈ្មោះថ្មី"),
    "indicators.name.CP_CASE_OPEN": ("Open cases", "ករណីកំពុងបើក"),
    "indicators.name.CP_CASE_HIGH_RISK": ("Open high-risk cases", "ករណីហានិភ័យខ្ពស់កំពុងបើក"),
    "indicators.name.CP_CHILD_VULN": (
        "Open cases by vulnerability",
        "ករណីកំពុងបើក តាមភាពងាយរងគ្រោះ",
    ),
    "indicators.name.CP_REF_MADE": ("Referrals made", "ការបញ្ជូនដែលបានធ្វើ"),
    "indicators.name.CP_REF_ACCEPTED": ("Referrals accepted", "ការបញ្ជូនដែលត្រូវបានទទួល"),
    "indicators.name.CP_REF_COMPLETED": ("Referrals completed", "ការបញ្ជូនដែលបានបញ្ចប់"),
    "indicators.name.CP_REF_OVERDUE": (
        "Referrals that went overdue",
        "ការបញ្ជូនដែលហួសកាលកំណត់",
    ),
    "indicators.name.CP_REF_UNMATCHED": (
        "Referrals that found no provider",
        "ការបញ្ជូនដែលរកអ្នកផ្តល់សេវាមិនបាន",
    ),
    "indicators.name.CP_GRANT_APPROVED": ("Grants approved", "ជំនួយដែលបានអនុម័ត"),
    "indicators.name.CP_GRANT_DISBURSED": ("Grants disbursed", "ជំនួយដែលបានផ្តល់ប្រាក់"),
    "indicators.name.CP_GRANT_DISBURSED_KHR": ("Riel disbursed", "ប្រាក់រៀលដែលបានផ្តល់"),
    "indicators.name.CP_PROVIDERS": ("Active providers", "អ្នកផ្តល់សេវាសកម្ម"),
    "indicators.name.CP_WORKERS_ACTIVE": ("Active workers", "បុគ្គលិកសកម្ម"),
    "indicators.name.CP_WORKERS_TRAINED": (
        "Active workers trained in child protection",
        "បុគ្គលិកសកម្មដែលបានបណ្តុះបណ្តាលផ្នែកការពារកុមារ",
    ),
    "indicators.name.CP_CASELOAD_OVER": (
        "Workers above their maximum caseload",
        "បុគ្គលិកដែលមានករណីលើសកម្រិតអតិបរមា",
    ),
    "indicators.name.CP_CHILD_ASSIGNED": (
        "Open cases with a worker",
        "ករណីកំពុងបើកដែលមានបុគ្គលិកទទួលបន្ទុក",
    ),
    "indicators.name.CP_VISITS": ("Visits made", "ការចុះសួរសុខទុក្ខដែលបានធ្វើ"),
    "indicators.name.CP_VISIT_OVERDUE": (
        "Children with an overdue visit",
        "កុមារដែលការចុះសួរសុខទុក្ខហួសកាលកំណត់",
    ),
    "indicators.name.CP_CHILD_RESIDENTIAL": (
        "Open cases in residential care",
        "ករណីកំពុងបើកក្នុងមណ្ឌលថែទាំ",
    ),
    "indicators.name.CP_REINTEGRATED": ("Children reintegrated", "កុមារដែលបានធ្វើសមាហរណកម្ម"),
    "indicators.name.CP_REINTEGRATION_FOLLOWED": (
        "Reintegrated children followed up",
        "កុមារធ្វើសមាហរណកម្មដែលត្រូវបានតាមដាន",
    ),
}
