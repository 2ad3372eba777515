"""Funds and grants: balances, ledgers, the approval queue, requesting and approving."""

MESSAGES: dict[str, tuple[str, str]] = {
    # funds
    "funds.title": ("Funds", "មូលនិធិ"),
    "funds.approvals": ("Grants to approve or pay", "ជំនួយត្រូវអនុម័ត ឬផ្តល់ប្រាក់"),
    "funds.fund": ("Fund", "មូលនិធិ"),
    "funds.budget": ("Budget", "ថវិកា"),
    "funds.topped_up": ("Topped up", "បានបញ្ចូលបន្ថែម"),
    "funds.committed": ("Committed", "បានប្តេជ្ញា"),
    "funds.disbursed": ("Disbursed", "បានផ្តល់"),
    "funds.available": ("Available", "នៅសល់"),
    "funds.level.2": ("province fund", "មូលនិធិខេត្ត"),
    "funds.level.4": ("district fund", "មូលនិធិស្រុក/ខណ្ឌ"),
    "funds.level.6": ("commune fund", "មូលនិធិឃុំ/សង្កាត់"),
    "funds.in_riel": ("Amounts in riel.", "ចំនួនទឹកប្រាក់គិតជារៀល។"),
    "funds.none": ("No fund in your areas yet.", "មិនទាន់មានមូលនិធិក្នុងតំបន់របស់អ្នកទេ។"),
    "funds.max_grant": ("Largest grant", "ជំនួយអតិបរមា"),
    "funds.threshold": ("Second approval", "ការអនុម័តលើកទីពីរ"),
    "funds.threshold_value": (
        "needed above {amount} riel",
        "ត្រូវការ សម្រាប់ចំនួនលើសពី {amount} រៀល",
    ),
    "funds.opened_by": ("Opened by", "បើកដោយ"),
    "funds.recent_grants": ("Latest grants from this fund", "ជំនួយចុងក្រោយពីមូលនិធិនេះ"),
    "funds.no_grants": ("No grant from this fund yet.", "មិនទាន់មានជំនួយពីមូលនិធិនេះទេ។"),
    "funds.ledger": ("Ledger", "បញ្ជីគណនេយ្យ"),
    "funds.ledger_not_yours": (
        "The ledger of this fund is kept for staff whose areas cover the whole fund. "
        "You see its balances above.",
        "បញ្ជីគណនេយ្យនៃមូលនិធិនេះ សម្រាប់តែបុគ្គលិកដែលតំបន់របស់ខ្លួនគ្របដណ្តប់មូលនិធិទាំងមូលប៉ុណ្ណោះ។ "
        "អ្នកអាចមើលសមតុល្យរបស់វានៅខាងលើ។",
    ),
    "funds.ledger_empty": ("Nothing booked yet.", "មិនទាន់មានការកត់ត្រានៅឡើយទេ។"),
    "funds.entry": ("Entry", "ការកត់ត្រា"),
    "funds.amount_riel": ("Amount (riel)", "ចំនួនទឹកប្រាក់ (រៀល)"),
    "funds.grant": ("Grant", "ជំនួយ"),
    "funds.reference": ("Method and reference", "វិធី និងលេខយោង"),
    # the approval queue
    "grants.queue_title": ("Grants to approve or pay", "ជំនួយត្រូវអនុម័ត ឬផ្តល់ប្រាក់"),
    "grants.stage.approval": ("Awaiting approval", "កំពុងរង់ចាំការអនុម័ត"),
    "grants.stage.payment": ("Approved, awaiting payment", "បានអនុម័ត កំពុងរង់ចាំការផ្តល់ប្រាក់"),
    "grants.stage_note.approval": (
        "A grant is approved by someone other than the person who requested it.",
        "ជំនួយត្រូវអនុម័តដោយអ្នកផ្សេង ក្រៅពីអ្នកដែលបានស្នើសុំ។",
    ),
    "grants.stage_note.payment": (
        "Pay an approved grant once, with the payment's reference.",
        "ផ្តល់ប្រាក់ជំនួយដែលបានអនុម័តតែម្តងគត់ ជាមួយលេខយោងនៃការទូទាត់។",
    ),
    "grants.queue_empty.approval": (
        "No grant is awaiting approval.",
        "គ្មានជំនួយកំពុងរង់ចាំការអនុម័តទេ។",
    ),
    "grants.queue_empty.payment": (
        "No approved grant is awaiting payment.",
        "គ្មានជំនួយដែលបានអនុម័ត កំពុងរង់ចាំការផ្តល់ប្រាក់ទេ។",
    ),
    "grants.child": ("Child", "កុមារ"),
    "grants.child_in": ("Child in {place}", "កុមារនៅ {place}"),
    "grants.fund": ("Fund", "មូលនិធិ"),
    "grants.category": ("Category", "ប្រភេទ"),
    "grants.amount": ("Amount", "ចំនួនទឹកប្រាក់"),
    "grants.amount_riel": ("Amount (riel)", "ចំនួនទឹកប្រាក់ (រៀល)"),
    "grants.requested_by": ("Requested by", "ស្នើសុំដោយ"),
    "grants.approvals": ("Approvals", "ការអនុម័ត"),
    "grants.approvals_count": ("{given} of {required}", "{given} ក្នុងចំណោម {required}"),
    "grants.two_needed_short": ("two approvals", "ការអនុម័តពីរ"),
    "grants.action": ("Action", "សកម្មភាព"),
    "grants.repeat": ("Repeat within 30 days", "ម្តងទៀតក្នុងរយៈពេល ៣០ ថ្ងៃ"),
    "grants.repeat_note": (
        "another grant of this category was paid in the last 30 days",
        "ជំនួយប្រភេទនេះមួយទៀតត្រូវបានផ្តល់ក្នុងរយៈពេល ៣០ ថ្ងៃចុងក្រោយ",
    ),
    "grants.you": ("you", "អ្នក"),
    "grants.maker_note": (
        "You requested this; another person approves it.",
        "អ្នកបានស្នើសុំជំនួយនេះ។ អ្នកផ្សេងទៀតជាអ្នកអនុម័ត។",
    ),
    "grants.approved_by_me": (
        "You approved this; the second approval must come from another person.",
        "អ្នកបានអនុម័តជំនួយនេះហើយ។ ការអនុម័តលើកទីពីរត្រូវតែមកពីអ្នកផ្សេង។",
    ),
    "grants.approve": ("Approve", "អនុម័ត"),
    "grants.reject": ("Reject", "បដិសេធ"),
    "grants.reject_reason": ("Why it is rejected", "មូលហេតុនៃការបដិសេធ"),
    "grants.disburse": ("Record payment", "កត់ត្រាការផ្តល់ប្រាក់"),
    "grants.method": ("Paid by", "វិធីផ្តល់ប្រាក់"),
    "grants.reference": ("Payment reference", "លេខយោងការទូទាត់"),
    "grants.reference_hint": (
        "The receipt, transfer or transaction number.",
        "លេខបង្កាន់ដៃ លេខផ្ទេរប្រាក់ ឬលេខប្រតិបត្តិការ។",
    ),
    # requesting a grant
    "grants.new_title": ("Request a grant", "ស្នើសុំជំនួយ"),
    "grants.new_lead": (
        "Request a grant for {name} ({place}). Another person approves it.",
        "ស្នើសុំជំនួយសម្រាប់ {name} ({place})។ អ្នកផ្សេងទៀតជាអ្នកអនុម័ត។",
    ),
    "grants.no_fund": (
        "No fund is open in your areas: a fund manager opens one.",
        "គ្មានមូលនិធិបើកក្នុងតំបន់របស់អ្នកទេ៖ អ្នកគ្រប់គ្រងមូលនិធិជាអ្នកបើក។",
    ),
    "grants.pick_fund": ("Choose a fund", "ជ្រើសរើសមូលនិធិ"),
    "grants.funds_covering": (
        "Funds covering the child's commune",
        "មូលនិធិដែលគ្របដណ្តប់ឃុំ/សង្កាត់របស់កុមារ",
    ),
    "grants.funds_other": ("Other funds", "មូលនិធិផ្សេងទៀត"),
    "grants.fund_available": (
        "{amount} riel available, at most {max} riel a grant",
        "នៅសល់ {amount} រៀល ជំនួយមួយយ៉ាងច្រើន {max} រៀល",
    ),
    "grants.pick_category": ("Choose a category", "ជ្រើសរើសប្រភេទ"),
    "grants.shock": ("Disaster", "គ្រោះមហន្តរាយ"),
    "grants.shock_none": ("None", "គ្មាន"),
    "grants.shock_hint": (
        "Only for an emergency (disaster) grant, and required for it.",
        "សម្រាប់តែជំនួយគ្រោះមហន្តរាយបន្ទាន់ប៉ុណ្ណោះ ហើយត្រូវតែបំពេញ។",
    ),
    "grants.pick_shock": ("Choose the disaster", "ជ្រើសរើសគ្រោះមហន្តរាយ"),
    "grants.items": ("What is bought", "អ្វីដែលត្រូវទិញ"),
    "grants.items_hint": (
        "Only for material support, and required for it: the items must cost the amount. "
        "Leave the amount empty to use their total.",
        "សម្រាប់តែជំនួយសម្ភារៈប៉ុណ្ណោះ ហើយត្រូវតែបំពេញ៖ តម្លៃសម្ភារៈត្រូវតែស្មើនឹងចំនួនទឹកប្រាក់។ "
        "ទុកចំនួនទឹកប្រាក់ឱ្យទទេ ដើម្បីប្រើតម្លៃសរុប។",
    ),
    "grants.item_description": ("Item", "សម្ភារៈ"),
    "grants.item_quantity": ("Quantity", "បរិមាណ"),
    "grants.item_unit_cost": ("Unit cost (riel)", "តម្លៃរាយ (រៀល)"),
    "grants.item_description_needed": (
        "Say what the item is (at most 200 characters).",
        "សូមបញ្ជាក់ថាសម្ភារៈនោះជាអ្វី (យ៉ាងច្រើន ២០០ តួអក្សរ)។",
    ),
    "grants.items_needed": (
        "Material support lists what is bought.",
        "ជំនួយសម្ភារៈត្រូវរាយបញ្ជីអ្វីដែលត្រូវទិញ។",
    ),
    "grants.whole_number": ("A whole number above zero.", "ចំនួនគត់ធំជាងសូន្យ។"),
    "grants.whole_riel": (
        "Whole riel above zero, in digits (1,250,000).",
        "ចំនួនរៀលគត់ធំជាងសូន្យ ជាលេខ (១,២៥០,០០០)។",
    ),
    "grants.amount_hint": (
        "Whole riel; Khmer or Latin digits, with or without commas.",
        "ចំនួនរៀលគត់ ជាលេខខ្មែរ ឬឡាតាំង មានឬគ្មានសញ្ញាក្បៀសក៏បាន។",
    ),
    "grants.justification": ("Justification", "ហេតុផល"),
    "grants.justification_hint": (
        "Why the child needs it. Required when the child had a grant of this category "
        "paid in the last 30 days.",
        "ហេតុអ្វីកុមារត្រូវការ។ ត្រូវតែបំពេញ ប្រសិនបើកុមារបានទទួលជំនួយប្រភេទនេះ ក្នុងរយៈពេល ៣០ ថ្ងៃចុងក្រោយ។",
    ),
    "grants.submit": ("Request the grant", "ដាក់ស្នើសុំជំនួយ"),
    "grants.too_long": ("At most {max} characters.", "យ៉ាងច្រើន {max} តួអក្សរ។"),
    "grants.pick_method": ("Choose how it was paid", "ជ្រើសរើសវិធីផ្តល់ប្រាក់"),
    "grants.child_not_synced": (
        "Funds does not know this child yet (it was registered a moment ago). "
        "Try again in a few seconds.",
        "ផ្នែកមូលនិធិមិនទាន់ស្គាល់កុមារនេះនៅឡើយទេ (ទើបតែចុះឈ្មោះ)។ សូមព្យាយាមម្តងទៀតក្នុងរយៈពេលពីរបីវិនាទី។",
    ),
    "grants.requested": (
        "Grant requested. It now waits for another person's approval.",
        "បានស្នើសុំជំនួយហើយ។ ឥឡូវនេះកំពុងរង់ចាំការអនុម័តពីអ្នកផ្សេង។",
    ),
    # one grant
    "grants.record_title": ("Grant", "ជំនួយ"),
    "grants.record_heading": ("Grant: {category}", "ជំនួយ៖ {category}"),
    "grants.needs_one": ("This grant needs one approval.", "ជំនួយនេះត្រូវការការអនុម័តមួយ។"),
    "grants.needs_two": (
        "This grant needs two approvals: it is above the fund's threshold of {threshold} "
        "riel, so the second comes from district level or above.",
        "ជំនួយនេះត្រូវការការអនុម័តពីរ៖ វាលើសពីកម្រិត {threshold} រៀលរបស់មូលនិធិ "
        "ដូច្នេះការអនុម័តលើកទីពីរត្រូវមកពីថ្នាក់ស្រុក/ខណ្ឌ ឬខ្ពស់ជាងនេះ។",
    ),
    "grants.approvals_so_far": (
        "Approvals so far: {given} of {required}.",
        "ការអនុម័តរហូតមកដល់ពេលនេះ៖ {given} ក្នុងចំណោម {required}។",
    ),
    "grants.approved_by": ("Approved by {org} on {date}", "អនុម័តដោយ {org} នៅថ្ងៃ {date}"),
    "grants.district_level": ("district level", "ថ្នាក់ស្រុក/ខណ្ឌ"),
    "grants.disbursement": ("Paid", "បានផ្តល់ប្រាក់"),
    "grants.what_you_can_do": ("What you can do", "អ្វីដែលអ្នកអាចធ្វើបាន"),
    "grants.cancel_reason": ("Why it is cancelled (optional)", "មូលហេតុនៃការលុបចោល (ស្រេចចិត្ត)"),
    "grants.cancel": ("Cancel the grant", "លុបចោលជំនួយ"),
    "grants.history": ("What happened", "អ្វីដែលបានកើតឡើង"),
    "grants.step": ("Step", "ជំហាន"),
    "grants.reason": ("Reason", "មូលហេតុ"),
    "grants.conflict": (
        "Nothing was changed: {detail}",
        "គ្មានអ្វីត្រូវបានផ្លាស់ប្តូរទេ៖ {detail}",
    ),
    "grants.done.approve": ("Grant approved.", "បានអនុម័តជំនួយ។"),
    "grants.done.first_approval": (
        "Your approval is recorded. The grant needs a second approval, from district level "
        "or above.",
        "ការអនុម័តរបស់អ្នកត្រូវបានកត់ត្រា។ ជំនួយនេះត្រូវការការអនុម័តលើកទីពីរ ពីថ្នាក់ស្រុក/ខណ្ឌ ឬខ្ពស់ជាងនេះ។",
    ),
    "grants.done.reject": ("Grant rejected.", "បានបដិសេធជំនួយ។"),
    "grants.done.disburse": ("Payment recorded.", "បានកត់ត្រាការផ្តល់ប្រាក់។"),
    "grants.done.cancel": ("Grant cancelled.", "បានលុបចោលជំនួយ។"),
    "grant_action.requested": ("Requested", "បានស្នើសុំ"),
    "grant_action.approved": ("Approved", "បានអនុម័ត"),
    "grant_action.rejected": ("Rejected", "បានបដិសេធ"),
    "grant_action.disbursed": ("Paid", "បានផ្តល់ប្រាក់"),
    "grant_action.cancelled": ("Cancelled", "បានលុបចោល"),
    "grant_action.reversed": ("Reversed", "បានដកវិញ"),
}
