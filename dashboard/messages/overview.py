"""The overview page."""

MESSAGES: dict[str, tuple[str, str]] = {
    "overview.title": ("Overview", "ទិដ្ឋភាពទូទៅ"),
    "overview.areas": ("Your areas: {areas}", "តំបន់របស់អ្នក៖ {areas}"),
    "overview.open_cases": ("Open cases", "ករណីកំពុងបើក"),
    "overview.high_risk": ("High-risk open cases", "ករណីហានិភ័យខ្ពស់"),
    "overview.pending_referrals": ("Referrals waiting for an answer", "ការបញ្ជូនកំពុងរង់ចាំចម្លើយ"),
    "overview.overdue_referrals": ("Overdue referrals", "ការបញ្ជូនហួសកាលកំណត់"),
    "overview.awaiting_approval": ("Grants awaiting your approval", "ជំនួយរង់ចាំការអនុម័តរបស់អ្នក"),
    "overview.visits_overdue": ("Visits overdue", "ការចុះសួរសុខទុក្ខហួសកាលកំណត់"),
    "overview.visits_due": ("Visits coming up", "ការចុះសួរសុខទុក្ខខាងមុខ"),
    "overview.unavailable": ("not available now", "មិនមាននៅពេលនេះ"),
    "overview.funds": ("Fund balances", "សមតុល្យមូលនិធិ"),
    "overview.fund": ("Fund", "មូលនិធិ"),
    "overview.budget": ("Budget", "ថវិកា"),
    "overview.committed": ("Committed", "បានប្តេជ្ញា"),
    "overview.disbursed": ("Disbursed", "បានផ្តល់"),
    "overview.available": ("Available", "នៅសល់"),
    "overview.no_funds": ("No fund in your areas yet.", "មិនទាន់មានមូលនិធិក្នុងតំបន់របស់អ្នកទេ។"),
}
