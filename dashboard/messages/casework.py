"""Casework: the caseload, visits due, workers, recording a visit."""

MESSAGES: dict[str, tuple[str, str]] = {
    "casework.title": ("Casework", "ការងារករណី"),
    "casework.you_are": (
        "You are {name}, {role}: {caseload} of {max} children assigned.",
        "អ្នកគឺ {name} ជា{role}៖ កុមារ {caseload} ក្នុងចំណោម {max} នាក់ ត្រូវបានប្រគល់ឱ្យអ្នក។",
    ),
    "casework.tab.caseload": ("My caseload", "ករណីរបស់ខ្ញុំ"),
    "casework.tab.overdue": ("Visits overdue", "ការចុះសួរសុខទុក្ខហួសកាលកំណត់"),
    "casework.tab.upcoming": ("Visits coming up", "ការចុះសួរសុខទុក្ខខាងមុខ"),
    "casework.tab.workers": ("Support workers", "អ្នកគាំទ្រ"),
    "casework.due_note.overdue": (
        "Children whose planned visit date has passed without a visit.",
        "កុមារដែលថ្ងៃចុះសួរសុខទុក្ខតាមគម្រោងបានកន្លងផុត ដោយគ្មានការចុះសួរសុខទុក្ខ។",
    ),
    "casework.due_note.upcoming": (
        "Children with a visit planned and not yet due.",
        "កុមារដែលមានការចុះសួរសុខទុក្ខតាមគម្រោង ហើយមិនទាន់ដល់ថ្ងៃកំណត់។",
    ),
    "casework.none_due.overdue": ("No visit is overdue.", "គ្មានការចុះសួរសុខទុក្ខហួសកាលកំណត់ទេ។"),
    "casework.none_due.upcoming": (
        "No visit is planned yet.",
        "មិនទាន់មានការចុះសួរសុខទុក្ខតាមគម្រោងទេ។",
    ),
    "casework.no_caseload": (
        "No child is assigned to you now.",
        "បច្ចុប្បន្ន គ្មានកុមារត្រូវបានប្រគល់ឱ្យអ្នកទេ។",
    ),
    "casework.no_workers": ("No support worker to show.", "គ្មានអ្នកគាំទ្រដើម្បីបង្ហាញទេ។"),
    "casework.child": ("Child", "កុមារ"),
    "casework.child_in": ("Child in {place}", "កុមារនៅ {place}"),
    "casework.assigned_on": ("Assigned on", "ប្រគល់នៅថ្ងៃ"),
    "casework.last_visit": ("Last visit", "ការចុះសួរសុខទុក្ខចុងក្រោយ"),
    "casework.next_visit": ("Next visit", "ការចុះសួរសុខទុក្ខបន្ទាប់"),
    "casework.overdue": ("overdue", "ហួសកាលកំណត់"),
    "casework.over_caseload": ("over caseload", "លើសចំនួនករណី"),
    "casework.over": ("over", "លើស"),
    "casework.record_visit": ("Record a visit", "កត់ត្រាការចុះសួរសុខទុក្ខ"),
    "casework.worker": ("Support worker", "អ្នកគាំទ្រ"),
    "casework.no_worker": ("No support worker assigned.", "មិនទាន់មានអ្នកគាំទ្រទេ។"),
    "casework.role": ("Role", "តួនាទី"),
    "casework.org": ("Organisation", "អង្គការ"),
    "casework.areas": ("Areas", "តំបន់"),
    "casework.caseload": ("Children / most", "កុមារ / អតិបរមា"),
    "casework.trainings": ("Trainings", "វគ្គបណ្តុះបណ្តាល"),
    "casework.worker_status.active": ("Active", "សកម្ម"),
    "casework.worker_status.inactive": ("Inactive", "អសកម្ម"),
    # recording a visit
    "casework.visit_title": ("Record a visit", "កត់ត្រាការចុះសួរសុខទុក្ខ"),
    "casework.visit_date": ("Date of the visit", "កាលបរិច្ឆេទនៃការចុះសួរសុខទុក្ខ"),
    "casework.kind": ("Kind of visit", "ប្រភេទនៃការចុះសួរសុខទុក្ខ"),
    "casework.outcome": ("Outcome", "លទ្ធផល"),
    "casework.pick_kind": ("Choose the kind of visit", "ជ្រើសរើសប្រភេទនៃការចុះសួរសុខទុក្ខ"),
    "casework.pick_outcome": ("Choose the outcome", "ជ្រើសរើសលទ្ធផល"),
    "casework.notes": ("Notes (optional)", "កំណត់ចំណាំ (ស្រេចចិត្ត)"),
    "casework.notes_hint": (
        "Kept in casework only: never shared with other parts of Komar.",
        "រក្សាទុកតែក្នុងផ្នែកការងារករណីប៉ុណ្ណោះ៖ មិនចែករំលែកទៅផ្នែកផ្សេងទៀតនៃប្រព័ន្ធកុមារឡើយ។",
    ),
    "casework.next_visit_on": ("Next visit on (optional)", "ការចុះសួរសុខទុក្ខបន្ទាប់នៅថ្ងៃ (ស្រេចចិត្ត)"),
    "casework.next_visit_hint": (
        "After the visit's date. Komar flags the child if it passes without a visit.",
        "ក្រោយថ្ងៃនៃការចុះសួរសុខទុក្ខនេះ។ ប្រព័ន្ធកុមារនឹងសម្គាល់កុមារ ប្រសិនបើថ្ងៃនោះកន្លងផុតដោយគ្មានការចុះសួរសុខទុក្ខ។",
    ),
    "casework.save_visit": ("Save the visit", "រក្សាទុកការចុះសួរសុខទុក្ខ"),
    "casework.bad_date": ("A date, as 2026-12-03.", "កាលបរិច្ឆេទ ដូចជា 2026-12-03។"),
    "casework.date_to_come": (
        "A visit is recorded once made: not on a day still to come.",
        "ការចុះសួរសុខទុក្ខត្រូវកត់ត្រាបន្ទាប់ពីបានធ្វើរួច៖ មិនមែនសម្រាប់ថ្ងៃដែលមិនទាន់មកដល់ទេ។",
    ),
    "casework.next_after": (
        "The next visit comes after this one's date.",
        "ការចុះសួរសុខទុក្ខបន្ទាប់ ត្រូវនៅក្រោយថ្ងៃនៃការចុះសួរសុខទុក្ខនេះ។",
    ),
    "casework.too_long": ("At most {max} characters.", "យ៉ាងច្រើន {max} តួអក្សរ។"),
    "casework.child_not_synced": (
        "Casework does not know this child yet (it was registered a moment ago). "
        "Try again in a few seconds.",
        "ផ្នែកការងារករណីមិនទាន់ស្គាល់កុមារនេះនៅឡើយទេ (ទើបតែចុះឈ្មោះ)។ សូមព្យាយាមម្តងទៀតក្នុងរយៈពេលពីរបីវិនាទី។",
    ),
    "casework.visit_recorded": ("Visit recorded.", "បានកត់ត្រាការចុះសួរសុខទុក្ខ។"),
}
