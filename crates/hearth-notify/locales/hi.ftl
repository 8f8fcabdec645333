# Hearth notification texts, Hindi. CLDR plural rules for hi: "one" is 0 and 1, "other" the rest.
# SMS and push texts carry no clinical content. `when` is shown in the recipient's time zone.

otp-code-subject = आपका Hearth साइन-इन कोड
otp-code-body = आपका Hearth साइन-इन कोड { $code } है। यह { $minutes } मिनट में समाप्त हो जाएगा। अगर आपने यह नहीं माँगा था, तो इस संदेश को अनदेखा करें।
otp-code-sms = Hearth कोड: { $code }। { $minutes } मिनट तक मान्य। इसे किसी से साझा न करें।

appointment-reminder-subject = अपॉइंटमेंट रिमाइंडर
appointment-reminder-body = { $when } को आपका अपॉइंटमेंट है। विवरण के लिए Hearth खोलें।
appointment-reminder-sms = Hearth: { $when } को आपका अपॉइंटमेंट है। विवरण के लिए ऐप खोलें।

medication-reminder-subject = दवा रिमाइंडर
medication-reminder-body = { $count ->
    [one] अभी आपको { $count } खुराक लेनी है।
   *[other] अभी आपको { $count } खुराकें लेनी हैं।
}

medication-refill-subject = दवा दोबारा मँगवाने का समय
medication-refill-body = आपकी एक दवा { $days } दिन में ख़त्म हो जाएगी। समय पर दोबारा मँगवा लें।

results-available-subject = Hearth में नए परिणाम
results-available-body = { $count ->
    [one] Hearth में { $count } नया परिणाम तैयार है।
   *[other] Hearth में { $count } नए परिणाम तैयार हैं।
}

emergency-alert-subject = ज़रूरी: कृपया Hearth खोलें
emergency-alert-body = Hearth में आपके लिए एक ज़रूरी संदेश है। कृपया अभी ऐप खोलें।

announcement-subject = { $title }
announcement-body = { $text }

appointment-change-subject = अपॉइंटमेंट { $change ->
    [booked] बुक हुआ
    [rescheduled] बदला गया
   *[cancelled] रद्द हुआ
}
appointment-change-body = { $change ->
    [booked] { $when } का एक अपॉइंटमेंट बुक हुआ।
    [rescheduled] एक अपॉइंटमेंट { $when } पर बदला गया।
   *[cancelled] { $when } का अपॉइंटमेंट रद्द हुआ।
} विवरण के लिए Hearth खोलें।

appointment-offer-subject = अपॉइंटमेंट का समय उपलब्ध है
appointment-offer-body = { $when } का एक समय खाली हुआ है। बुक करने के लिए Hearth खोलें।
appointment-offer-sms = Hearth: { $when } का एक समय खाली है। बुक करने के लिए ऐप खोलें।

registry-invite-subject = Hearth में आपका स्वास्थ्य रिकॉर्ड
registry-invite-body = आपका क्लिनिक आपको Hearth में अपना स्वास्थ्य रिकॉर्ड इस्तेमाल करने के लिए आमंत्रित करता है। { $link } खोलें या ऐप में कोड { $code } डालें। यह आमंत्रण एक ही बार काम करता है और { $hours } घंटे में समाप्त हो जाएगा। अगर आपको इसकी उम्मीद नहीं थी, तो इस संदेश को अनदेखा करें।
registry-invite-sms = Hearth: आपका क्लिनिक आपको आपके स्वास्थ्य रिकॉर्ड के लिए आमंत्रित करता है। कोड { $code } या { $link } (एक बार, { $hours } घंटे)। इसे किसी से साझा न करें।

# क्लिनिक के कर्मचारियों का संदेश (`title`, `message` उन्हीं के शब्द)। SMS और पुश में केवल शीर्षक।
staff-message-subject = { $title }
staff-message-body =
    { $message }

    यह संदेश आपकी देखभाल टीम ने Hearth से भेजा है। इस संदेश के उत्तर पढ़े नहीं जाते।
staff-message-sms = Hearth: { $title }। अपनी देखभाल टीम का संदेश पढ़ने के लिए ऐप खोलें।

emergency-help-subject = आपातकाल: { $name } को मदद चाहिए
emergency-help-body = { $name } ने Hearth में आपातकालीन बटन दबाया है और उन्हें अभी मदद की ज़रूरत हो सकती है। { $located ->
    [yes] उनका स्थान: { $map }
   *[no] उनका स्थान साझा नहीं किया गया।
}
emergency-help-sms = आपातकाल: { $name } ने Hearth में आपातकालीन बटन दबाया है और उन्हें अभी मदद की ज़रूरत हो सकती है। { $located ->
    [yes] स्थान: { $map }
   *[no] स्थान साझा नहीं किया गया।
}

emergency-safe-subject = { $name } सुरक्षित हैं
emergency-safe-body = { $name } ने Hearth में आपातकालीन अलर्ट रद्द कर दिया है और बताया है कि वे सुरक्षित हैं।
emergency-safe-sms = Hearth: { $name } ने आपातकालीन अलर्ट रद्द कर दिया है और बताया है कि वे सुरक्षित हैं।

# उपयोगकर्ता का अपना अलार्म (hearth-alarms)। अलार्म का लेबल संदेश में नहीं होता; ऐप में दिखता है।
alarm-subject = { $kind ->
    [medication] दवा का अलार्म
    [water] पानी का अलार्म
   *[other] अलार्म
}
alarm-body = { $kind ->
    [medication] आपकी दवा का समय हो गया है। अलार्म देखने के लिए Hearth खोलें।
    [water] पानी पीने का समय हो गया है।
   *[other] आपका Hearth अलार्म बज रहा है। इसे देखने के लिए Hearth खोलें।
}

# मरीज़ का दैनिक सारांश (hearth-wellness), केवल ऐप और ई-मेल में।
daily-summary-subject = { $day } का आपका दैनिक सारांश
daily-summary-body =
    { $summary }

    अपने लक्ष्य और इतिहास के लिए Hearth खोलें।
daily-summary-sms = Hearth: आपका दैनिक सारांश तैयार है। पढ़ने के लिए ऐप खोलें।
