"""Referrals: the queue, referring a child, a referral and its answers."""

MESSAGES: dict[str, tuple[str, str]] = {
    "referrals.title": ("Referrals", "ការបញ្ជូន"),
    "referrals.sides": ("Whose referrals", "ការបញ្ជូនរបស់អ្នកណា"),
    "referrals.side.all": ("All I may see", "ទាំងអស់ដែលខ្ញុំអាចមើលបាន"),
    "referrals.side.to_answer": ("To answer", "ត្រូវឆ្លើយតប"),
    "referrals.side.made": ("Made by us", "ដែលយើងបានបញ្ជូន"),
    "referrals.side_note.to_answer": (
        "Referrals to your organisation as the provider: accept, decline or complete them.",
        "ការបញ្ជូនមកអង្គការរបស់អ្នក ជាអ្នកផ្តល់សេវា៖ ទទួលយក បដិសេធ ឬបញ្ចប់។",
    ),
    "referrals.side_note.made": (
        "Referrals your organisation made: follow them, or cancel one that is no longer needed.",
        "ការបញ្ជូនដែលអង្គការរបស់អ្នកបានធ្វើ៖ តាមដាន ឬលុបចោលការបញ្ជូនដែលលែងត្រូវការ។",
    ),
    "referrals.side_chip.to_answer": ("to answer", "ត្រូវឆ្លើយ"),
    "referrals.side_chip.made": ("ours", "របស់យើង"),
    "referrals.side_lead.to_answer": (
        "Your organisation is the provider of this referral.",
        "អង្គការរបស់អ្នក ជាអ្នកផ្តល់សេវាសម្រាប់ការបញ្ជូននេះ។",
    ),
    "referrals.side_lead.made": (
        "Your organisation made this referral.",
        "អង្គការរបស់អ្នក បានធ្វើការបញ្ជូននេះ។",
    ),
    "referrals.service": ("Service", "សេវា"),
    "referrals.urgency": ("Urgency", "កម្រិតបន្ទាន់"),
    "referrals.provider": ("Provider", "អ្នកផ្តល់សេវា"),
    "referrals.child": ("Child", "កុមារ"),
    "referrals.child_in": ("Child in {place}", "កុមារនៅ {place}"),
    "referrals.due": ("Answer due", "ត្រូវឆ្លើយមុន"),
    "referrals.overdue": ("overdue", "ហួសកាលកំណត់"),
    "referrals.overdue_only": ("Overdue only", "តែការហួសកាលកំណត់"),
    "referrals.filter": ("Show", "បង្ហាញ"),
    "referrals.none": (
        "No referral to show with these filters.",
        "គ្មានការបញ្ជូនដែលត្រូវនឹងតម្រងទាំងនេះទេ។",
    ),
    # referring a child
    "referrals.new_title": ("Refer a child to a service", "បញ្ជូនកុមារទៅសេវា"),
    "referrals.new_lead": (
        "Refer {name} ({place}) to a service provider.",
        "បញ្ជូន {name} ({place}) ទៅអ្នកផ្តល់សេវា។",
    ),
    "referrals.pick_service": ("Choose a service", "ជ្រើសរើសសេវា"),
    "referrals.pick_urgency": ("Choose an urgency", "ជ្រើសរើសកម្រិតបន្ទាន់"),
    "referrals.pick_outcome": ("Choose an outcome", "ជ្រើសរើសលទ្ធផល"),
    "referrals.deadline.normal": ("answer within 7 days", "ឆ្លើយក្នុងរយៈពេល ៧ ថ្ងៃ"),
    "referrals.deadline.high": ("answer within 72 hours", "ឆ្លើយក្នុងរយៈពេល ៧២ ម៉ោង"),
    "referrals.deadline.emergency": ("answer within 24 hours", "ឆ្លើយក្នុងរយៈពេល ២៤ ម៉ោង"),
    "referrals.reason": ("Reason for the referral", "មូលហេតុនៃការបញ្ជូន"),
    "referrals.reason_hint": (
        "What the child needs and why. The provider reads this.",
        "អ្វីដែលកុមារត្រូវការ និងហេតុអ្វី។ អ្នកផ្តល់សេវានឹងអានវា។",
    ),
    "referrals.let_komar_choose": (
        "Let Komar choose (the nearest provider with room)",
        "ឱ្យប្រព័ន្ធកុមារជ្រើសរើស (អ្នកផ្តល់សេវាជិតបំផុតដែលនៅមានកន្លែង)",
    ),
    "referrals.provider_hint": (
        "Active providers serving the child's commune. Choose one only if you must.",
        "អ្នកផ្តល់សេវាសកម្មដែលបម្រើឃុំ/សង្កាត់របស់កុមារ។ ជ្រើសរើសតែពេលចាំបាច់ប៉ុណ្ណោះ។",
    ),
    "referrals.no_providers": (
        "No active provider serves the child's commune yet: Komar will say if none can take it.",
        "មិនទាន់មានអ្នកផ្តល់សេវាសកម្មបម្រើឃុំ/សង្កាត់របស់កុមារទេ៖ ប្រព័ន្ធកុមារនឹងប្រាប់ ប្រសិនបើគ្មាននរណាអាចទទួលបាន។",
    ),
    "referrals.no_consent": (
        "The caregiver has not consented to sharing the child's data. To refer the child "
        "anyway, say why below: it is recorded.",
        "អ្នកថែទាំមិនបានយល់ព្រមឱ្យចែករំលែកទិន្នន័យរបស់កុមារទេ។ ដើម្បីបញ្ជូនកុមារទោះយ៉ាងណាក៏ដោយ "
        "សូមបញ្ជាក់មូលហេតុខាងក្រោម៖ វានឹងត្រូវបានកត់ត្រាទុក។",
    ),
    "referrals.no_consent_partner": (
        "The caregiver has not consented to sharing the child's data: only government staff "
        "may refer the child without it.",
        "អ្នកថែទាំមិនបានយល់ព្រមឱ្យចែករំលែកទិន្នន័យរបស់កុមារទេ៖ មានតែមន្ត្រីរាជការប៉ុណ្ណោះ "
        "ដែលអាចបញ្ជូនកុមារដោយគ្មានការយល់ព្រម។",
    ),
    "referrals.override_justification": (
        "Why refer without consent",
        "ហេតុអ្វីបញ្ជូនដោយគ្មានការយល់ព្រម",
    ),
    "referrals.submit": ("Make the referral", "ធ្វើការបញ្ជូន"),
    "referrals.too_long": ("At most {max} characters.", "យ៉ាងច្រើន {max} តួអក្សរ។"),
    "referrals.child_not_synced": (
        "Referrals does not know this child yet (it was registered a moment ago). "
        "Try again in a few seconds.",
        "ផ្នែកបញ្ជូនមិនទាន់ស្គាល់កុមារនេះនៅឡើយទេ (ទើបតែចុះឈ្មោះ)។ សូមព្យាយាមម្តងទៀតក្នុងរយៈពេលពីរបីវិនាទី។",
    ),
    "referrals.no_provider": (
        "No active provider of {service} with room serves the child's place. The unmet need "
        "is counted; choose a provider above, another service, or try again later.",
        "គ្មានអ្នកផ្តល់សេវា{service}សកម្មដែលនៅមានកន្លែង បម្រើទីកន្លែងរបស់កុមារទេ។ "
        "តម្រូវការដែលមិនបានឆ្លើយតបត្រូវបានរាប់ទុក៖ "
        "សូមជ្រើសរើសអ្នកផ្តល់សេវាខាងលើ សេវាផ្សេង ឬព្យាយាមម្តងទៀតនៅពេលក្រោយ។",
    ),
    "referrals.consent_needed": (
        "The caregiver has not consented to sharing the child's data: say why the child is "
        "referred without it.",
        "អ្នកថែទាំមិនបានយល់ព្រមឱ្យចែករំលែកទិន្នន័យរបស់កុមារទេ៖ សូមបញ្ជាក់ពីមូលហេតុដែលបញ្ជូនកុមារដោយគ្មានការយល់ព្រម។",
    ),
    "referrals.made": ("Referral made.", "បានធ្វើការបញ្ជូនហើយ។"),
    # one referral
    "referrals.record_title": ("Referral", "ការបញ្ជូន"),
    "referrals.record_heading": ("Referral for {service}", "ការបញ្ជូនសម្រាប់{service}"),
    "referrals.referred_by": ("Referred by", "បញ្ជូនដោយ"),
    "referrals.made_on": ("Referred on", "បញ្ជូននៅថ្ងៃ"),
    "referrals.answer_by": ("Provider to answer by", "អ្នកផ្តល់សេវាត្រូវឆ្លើយមុន"),
    "referrals.accepted_on": ("Accepted on", "ទទួលយកនៅថ្ងៃ"),
    "referrals.closed_on": ("Closed on", "បិទនៅថ្ងៃ"),
    "referrals.decline_reason": ("Why it is declined", "មូលហេតុនៃការបដិសេធ"),
    "referrals.cancel_reason": ("Why it is cancelled", "មូលហេតុនៃការលុបចោល"),
    "referrals.outcome": ("Outcome", "លទ្ធផល"),
    "referrals.outcome_note": ("Note on the outcome (optional)", "កំណត់ចំណាំអំពីលទ្ធផល (ស្រេចចិត្ត)"),
    "referrals.last_action_by": ("Last answered by", "ឆ្លើយចុងក្រោយដោយ"),
    "referrals.consent_override": (
        "Referred without consent because",
        "បានបញ្ជូនដោយគ្មានការយល់ព្រម ដោយសារ",
    ),
    "referrals.previous": ("Replaces", "ជំនួស"),
    "referrals.previous_link": (
        "the declined referral before it",
        "ការបញ្ជូនមុនដែលត្រូវបានបដិសេធ",
    ),
    "referrals.answer": ("What you can do", "អ្វីដែលអ្នកអាចធ្វើបាន"),
    "referrals.accept_hint": (
        "Accepting takes the child on: your organisation can then read the child's record.",
        "ការទទួលយក មានន័យថាទទួលមើលកុមារ៖ បន្ទាប់មកអង្គការរបស់អ្នកអាចអានកំណត់ត្រារបស់កុមារបាន។",
    ),
    "referrals.accept": ("Accept", "ទទួលយក"),
    "referrals.decline": ("Decline", "បដិសេធ"),
    "referrals.complete": ("Complete", "បញ្ចប់"),
    "referrals.cancel": ("Cancel the referral", "លុបចោលការបញ្ជូន"),
    "referrals.conflict": (
        "This referral was already answered (it is now: {status}). Nothing was changed.",
        "ការបញ្ជូននេះត្រូវបានឆ្លើយរួចហើយ (ស្ថានភាពបច្ចុប្បន្ន៖ {status})។ គ្មានអ្វីត្រូវបានផ្លាស់ប្តូរទេ។",
    ),
    "referrals.done.accept": ("Referral accepted.", "បានទទួលយកការបញ្ជូន។"),
    "referrals.done.complete": ("Referral completed.", "បានបញ្ចប់ការបញ្ជូន។"),
    "referrals.done.cancel": ("Referral cancelled.", "បានលុបចោលការបញ្ជូន។"),
    "referrals.done.decline": ("Referral declined.", "បានបដិសេធការបញ្ជូន។"),
    "referrals.done.rerouted": (
        "Referral declined. Komar sent it on to the next provider.",
        "បានបដិសេធការបញ្ជូន។ ប្រព័ន្ធកុមារបានបញ្ជូនបន្តទៅអ្នកផ្តល់សេវាបន្ទាប់។",
    ),
    "referrals.done.not_rerouted": (
        "Referral declined. No other provider could take it: the referrer will see this.",
        "បានបដិសេធការបញ្ជូន។ គ្មានអ្នកផ្តល់សេវាផ្សេងទៀតអាចទទួលបានទេ៖ អ្នកបញ្ជូននឹងឃើញព័ត៌មាននេះ។",
    ),
}
