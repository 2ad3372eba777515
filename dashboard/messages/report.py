"""The progress report (page and PDF)."""

MESSAGES: dict[str, tuple[str, str]] = {
    "report.title": ("Progress report", "របាយការណ៍វឌ្ឍនភាព"),
    "report.heading": ("Progress report, {quarter}", "របាយការណ៍វឌ្ឍនភាព {quarter}"),
    "report.area": ("Province or district", "ខេត្ត ឬស្រុក"),
    "report.quarter": ("Quarter", "ត្រីមាស"),
    "report.show": ("Show the report", "បង្ហាញរបាយការណ៍"),
    "report.pick_area": (
        "Pick a province or district to see its report.",
        "សូមជ្រើសរើសខេត្ត ឬស្រុក ដើម្បីមើលរបាយការណ៍របស់វា។",
    ),
    "report.no_area": (
        "Your account has no area a progress report covers.",
        "គណនីរបស់អ្នកមិនមានតំបន់ដែលរបាយការណ៍វឌ្ឍនភាពគ្របដណ្តប់ទេ។",
    ),
    "report.pdf": ("Download as PDF", "ទាញយកជា PDF"),
    "report.print_hint": (
        "Printing this page gives the same report on A4.",
        "ការបោះពុម្ពទំព័រនេះ ផ្តល់របាយការណ៍ដូចគ្នាលើក្រដាស A4។",
    ),
    "report.running": (
        "The quarter is still running: its figures are so far.",
        "ត្រីមាសនេះកំពុងដំណើរការនៅឡើយ៖ តួលេខរបស់វាគឺរហូតមកដល់ពេលនេះ។",
    ),
    "report.made": (
        "Made by Komar from the indicators API for {name}.",
        "បង្កើតដោយកុមារ ពី API សូចនាករ សម្រាប់ {name}។",
    ),
    "report.key": ("Key indicators", "សូចនាករសំខាន់ៗ"),
    "report.indicator": ("Indicator", "សូចនាករ"),
    "report.this_quarter": ("This quarter", "ត្រីមាសនេះ"),
    "report.previous": ("Previous quarter", "ត្រីមាសមុន"),
    "report.year_ago": ("A year before", "មួយឆ្នាំមុន"),
    "report.change": ("Change", "ការប្រែប្រួល"),
    "report.change_note": (
        "A change is not shown (–) when either figure is a protected small count.",
        "ការប្រែប្រួលមិនត្រូវបានបង្ហាញ (–) ទេ នៅពេលតួលេខណាមួយជាចំនួនតូចដែលត្រូវបានការពារ។",
    ),
    "report.by_quarter": ("The three quarters", "ត្រីមាសទាំងបី"),
    "report.trend": ("The last {count} quarters", "{count} ត្រីមាសចុងក្រោយ"),
    "report.trend_of": (
        "{indicator}, the last {count} quarters",
        "{indicator} {count} ត្រីមាសចុងក្រោយ",
    ),
    "report.gaps": ("Service gaps", "គម្លាតសេវា"),
    "report.gaps_lead": (
        "Referrals that found no provider, and referrals that went overdue, in {quarter}, "
        "by {level} and service type.",
        "ការបញ្ជូនដែលរកអ្នកផ្តល់សេវាមិនបាន និងការបញ្ជូនដែលហួសកាលកំណត់ ក្នុង{quarter} តាម{level} និងប្រភេទសេវា។",
    ),
    "report.gaps_by.district": ("district", "ស្រុក/ខណ្ឌ"),
    "report.gaps_by.commune": ("commune", "ឃុំ/សង្កាត់"),
    "report.gap_unavailable": (
        "Not available: the indicators API does not count this yet.",
        "មិនមានទេ៖ API សូចនាករមិនទាន់រាប់ចំនួននេះនៅឡើយ។",
    ),
    "report.total": ("Total", "សរុប"),
    "report.all": ("All", "ទាំងអស់"),
    "report.pdf_unavailable.title": ("PDF not available", "មិនអាចបង្កើត PDF បានទេ"),
    "report.pdf_unavailable.body": (
        "Making a PDF needs Chromium, which is not installed on this server. Print the report "
        "page instead, or ask your administrator.",
        "ការបង្កើត PDF ត្រូវការ Chromium ដែលមិនត្រូវបានដំឡើងលើម៉ាស៊ីនមេនេះទេ។ "
        "សូមបោះពុម្ពទំព័ររបាយការណ៍ជំនួសវិញ ឬសួរអ្នកគ្រប់គ្រងរបស់អ្នក។",
    ),
}
