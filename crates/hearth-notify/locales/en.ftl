# Hearth notification texts, English. SMS and push texts carry no clinical content: they say
# that something is waiting in Hearth, never what. `when` is shown in the recipient's time zone.

otp-code-subject = Your Hearth sign-in code
otp-code-body = Your Hearth sign-in code is { $code }. It expires in { $minutes } minutes. If you did not ask for it, ignore this message.
otp-code-sms = Hearth code: { $code }. Valid for { $minutes } minutes. Never share it.

appointment-reminder-subject = Appointment reminder
appointment-reminder-body = You have an appointment on { $when }. Open Hearth for the details.
appointment-reminder-sms = Hearth: you have an appointment on { $when }. Open the app for details.

medication-reminder-subject = Medication reminder
medication-reminder-body = { $count ->
    [one] You have one dose to take now.
   *[other] You have { $count } doses to take now.
}

medication-refill-subject = Time to refill a medicine
medication-refill-body = { $days ->
    [one] One of your medicines runs out in { $days } day. Ask for a refill in time.
   *[other] One of your medicines runs out in { $days } days. Ask for a refill in time.
}

results-available-subject = New results in Hearth
results-available-body = { $count ->
    [one] One new result is ready in Hearth.
   *[other] { $count } new results are ready in Hearth.
}

emergency-alert-subject = Urgent: please open Hearth
emergency-alert-body = There is an urgent message for you in Hearth. Please open the app now.

announcement-subject = { $title }
announcement-body = { $text }

# To the clinic (the practitioner's account) when a patient books, reschedules or cancels;
# no patient name, no reason. `change` is booked, rescheduled or cancelled.
appointment-change-subject = Appointment { $change ->
    [booked] booked
    [rescheduled] rescheduled
   *[cancelled] cancelled
}
appointment-change-body = { $change ->
    [booked] An appointment on { $when } was booked.
    [rescheduled] An appointment was moved to { $when }.
   *[cancelled] The appointment on { $when } was cancelled.
} Open Hearth for the details.

# To the next patient on a waitlist when a slot frees up.
appointment-offer-subject = An appointment slot is free
appointment-offer-body = A slot on { $when } has become free. Open Hearth to book it.
appointment-offer-sms = Hearth: a slot on { $when } is free. Open the app to book it.

registry-invite-subject = Your health record at Hearth
registry-invite-body = Your clinic invites you to use your health record in Hearth. Open { $link } or enter the code { $code } in the app. The invitation works once and expires in { $hours } hours. If you did not expect it, ignore this message.
registry-invite-sms = Hearth: your clinic invites you to your health record. Code { $code } or { $link } (once, { $hours } h). Never share it.

# A message a clinician or admin wrote (`title`, `message`: their own plain text, checked for
# length and control characters when it was sent). SMS and push carry the title only: the
# message itself is read in the app or the e-mail.
staff-message-subject = { $title }
staff-message-body =
    { $message }

    Sent by your care team through Hearth. Replies to this message are not read.
staff-message-sms = Hearth: { $title }. Open the app to read the message from your care team.

# An emergency alert to the patient's emergency contacts and care team. `name` is the patient's
# name as they gave it; `located` is yes (then `map` is an OpenStreetMap link) or no.
emergency-help-subject = Emergency: { $name } needs help
emergency-help-body = { $name } pressed the emergency button in Hearth and may need help now. { $located ->
    [yes] Their location: { $map }
   *[no] Their location was not shared.
}
emergency-help-sms = EMERGENCY: { $name } pressed the emergency button in Hearth and may need help now. { $located ->
    [yes] Location: { $map }
   *[no] Location not shared.
}

# The patient said "I am safe" after an emergency alert.
emergency-safe-subject = { $name } is safe
emergency-safe-body = { $name } cancelled the emergency alert in Hearth and says they are safe.
emergency-safe-sms = Hearth: { $name } cancelled the emergency alert and says they are safe.

# An alarm the user set (hearth-alarms). The alarm's own label is not in the message (it may be
# clinical and push or SMS pass third parties); the app shows it. `kind` is medication, water
# or custom.
alarm-subject = { $kind ->
    [medication] Medicine alarm
    [water] Water alarm
   *[other] Alarm
}
alarm-body = { $kind ->
    [medication] It is time for your medicine. Open Hearth to see the alarm.
    [water] It is time to drink some water.
   *[other] Your Hearth alarm is ringing. Open Hearth to see it.
}

# A patient's daily wellness summary (hearth-wellness), in-app and e-mail only: `summary` is
# the summary's text in the patient's language, `day` the local day (YYYY-MM-DD).
daily-summary-subject = Your daily summary for { $day }
daily-summary-body =
    { $summary }

    Open Hearth for your goals and history.
daily-summary-sms = Hearth: your daily summary is ready. Open the app to read it.
