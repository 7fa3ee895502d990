"""Word lists for language identification and transliteration of romanised Hindi.

Common romanised-Hindi words (function words, pronouns, frequent verbs and meme vocabulary), the
most common English words (so that code-mixed text is told from English), and the usual Devanagari
spelling of the romanised words whose spelling letter rules get wrong (schwa, nasals, long vowels).
Words in both lists (``to``, ``me``, ``main``, ``hi``) count as neither language.
"""

from __future__ import annotations

# romanised spelling -> Devanagari
ROMAN_TO_DEVANAGARI: dict[str, str] = {
    "hai": "है",
    "hain": "हैं",
    "nahi": "नहीं",
    "nahin": "नहीं",
    "nhi": "नहीं",
    "kya": "क्या",
    "kyun": "क्यों",
    "kyu": "क्यों",
    "kyon": "क्यों",
    "bhai": "भाई",
    "yaar": "यार",
    "yar": "यार",
    "dost": "दोस्त",
    "mera": "मेरा",
    "meri": "मेरी",
    "mere": "मेरे",
    "tera": "तेरा",
    "teri": "तेरी",
    "tere": "तेरे",
    "tum": "तुम",
    "tu": "तू",
    "aap": "आप",
    "hum": "हम",
    "main": "मैं",
    "mein": "में",
    "me": "में",
    "ko": "को",
    "ka": "का",
    "ki": "की",
    "ke": "के",
    "se": "से",
    "ne": "ने",
    "pe": "पे",
    "par": "पर",
    "aur": "और",
    "bhi": "भी",
    "to": "तो",
    "toh": "तो",
    "hi": "ही",
    "ho": "हो",
    "hoon": "हूँ",
    "hu": "हूँ",
    "hun": "हूँ",
    "tha": "था",
    "thi": "थी",
    "the": "थे",
    "kar": "कर",
    "karo": "करो",
    "raha": "रहा",
    "rahi": "रही",
    "rahe": "रहे",
    "raho": "रहो",
    "gaya": "गया",
    "gayi": "गई",
    "abhi": "अभी",
    "sab": "सब",
    "kuch": "कुछ",
    "kuchh": "कुछ",
    "bahut": "बहुत",
    "bohot": "बहुत",
    "accha": "अच्छा",
    "acha": "अच्छा",
    "achha": "अच्छा",
    "theek": "ठीक",
    "thik": "ठीक",
    "bas": "बस",
    "dekho": "देखो",
    "dekh": "देख",
    "pagal": "पागल",
    "bakwas": "बकवास",
    "bekaar": "बेकार",
    "bekar": "बेकार",
    "mast": "मस्त",
    "badhiya": "बढ़िया",
    "badiya": "बढ़िया",
    "zabardast": "ज़बरदस्त",
    "ekdum": "एकदम",
    "dil": "दिल",
    "khush": "ख़ुश",
    "dukh": "दुख",
    "mehnat": "मेहनत",
    "haar": "हार",
    "mat": "मत",
    "maano": "मानो",
    "mano": "मानो",
    "baat": "बात",
    "aaj": "आज",
    "phir": "फिर",
    "fir": "फिर",
    "sach": "सच",
    "bilkul": "बिलकुल",
    "haan": "हाँ",
    "jab": "जब",
    "log": "लोग",
    "gussa": "गुस्सा",
    "dimag": "दिमाग़",
    "kharab": "ख़राब",
    "beta": "बेटा",
    "waah": "वाह",
    "wah": "वाह",
    "khana": "खाना",
    "kha": "खा",
    "mazaa": "मज़ा",
    "maza": "मज़ा",
    "aa": "आ",
    "ja": "जा",
    "ghar": "घर",
    "pyaar": "प्यार",
    "pyar": "प्यार",
    "hua": "हुआ",
    "hui": "हुई",
    "sabse": "सबसे",
    "lage": "लगे",
    "yeh": "यह",
    "ye": "ये",
    "woh": "वह",
    "wo": "वो",
    "apun": "अपुन",
    "hasi": "हँसी",
    "ruki": "रुकी",
    "arre": "अरे",
    "arey": "अरे",
    "matlab": "मतलब",
    "chal": "चल",
    "chalo": "चलो",
    "jaana": "जाना",
    "jana": "जाना",
    "aaja": "आजा",
}

ROMAN_HINDI_WORDS: frozenset[str] = frozenset(ROMAN_TO_DEVANAGARI) | frozenset(
    (
        "kaun kab kahan kaise kaisa kaisi mujhe tujhe humko tumko unko usko isko iska uska unka apna apni "
        "apne lekin ya phir kabhi sabhi zyada jyada thoda bol bolo sun suno karna kiya kiye kiya gaye hoga "
        "hogi honge sakta sakti sakte wala wali wale liye lie waqt samay kaam padhai naukri shaadi bewakoof "
        "nalayak gadha ghatiya barbaad khatam bindaas jugaad chutti chhutti dhoop toofan andhere shakal iska "
        "jeet haara nahi_ ji na tab idhar udhar andar bahar upar neeche saath sath raat subah shaam kal din "
        "paisa paise pani dukhi khushi rona hasna mazza rukh ruk oye abe beti mummy papa didi bhaiya behen "
        "chacha mausi sasur saas dekhna dekha dekhi karti karte karta jaata jaati jaate aata aati aate lagta "
        "lagti lagte chahiye milta mila mili dimaag kyunki isliye "
    ).split()
) - {"nahi_"}

ENGLISH_WORDS: frozenset[str] = frozenset(
    (
        "the be to of and a in that have i it for not on with he as you do at this but his by from they we "
        "say her she or an will my one all would there their what so up out if about who get which go me when "
        "make can like time no just him know take people into year your good some could them see other than "
        "then now look only come its over think also back after use two how our work first well way even new "
        "want because any these give day most us is are was were been has had did does am said why where very "
        "too really love hate best ever never always everyone friend friends boss mom dad happy sad funny "
        "moment finally code life world today tomorrow night morning home school office phone bus wait "
        "meeting face team right wrong yes yeah sure said nothing everything something thing things feel "
        "feeling much more many great bad worst news awesome perfect terrible disaster ruined lunch laptop "
        "eats checks opens goes waits keep going dream big hustle give up hi main "
    ).split()
)
