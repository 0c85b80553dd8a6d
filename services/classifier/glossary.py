"""Danish words for the words of municipal mail in English, German, Polish, Ukrainian and
Arabic (pure data).

The unit profiles are Danish (KL's KLE plan, unit names, case titles), so a letter in another
language shares few words with them: about a sixth of the sample municipality's mail is in
another language, and the model's first choice was right for half of the English and a fifth
of the German items. Each foreign word here adds the Danish lemma(s) of its meaning to the
item's words, the way a clerk reads "building permit" as "byggetilladelse". Polish, Ukrainian
and Arabic are the large immigrant languages in Denmark, and a letter in them shares no word
at all with a profile. General municipal vocabulary, not tuned to any data set; extend it
freely. The Danish words go through the lemmatizer in `features.inputs`, as the profiles'
words do, so plain words ("borger") and lemma forms ("barn", "skatte") both meet the profile's
form (the lookup lemmatizer is not idempotent: "borger" -> "borge" -> "borg"). Words that are
also Danish words of another meaning ("fire" is four, "rente" interest, "rat" a steering wheel,
"kind" a cheek, Polish "basen" and "drog") are left out.

English and German are looked up as whole words with plural endings tried off. Polish and
Ukrainian inflect by ending ("śmieci", "śmieciami"; "сміття", "сміттям") and Arabic adds
clitics before a word (و "and", ال "the", ب "with", ل "for") and endings after it (ة, ات,
ين, ها), so their tables hold stems: a word gets the Danish words of the longest stem it starts
with, after its Arabic clitics are taken off. A stem is at least four letters, so a short word
cannot match by accident; shorter entries ("فرز", "ماء") must be the whole word (an Arabic word
with its ending taken off will do). One dictionary look-up per prefix length, not a scan of the
stems, and the answers are cached: most words of foreign mail come back. Polish stems are also
stored without diacritics, as Polish is often typed on a Danish keyboard ("smieci").
"""

from __future__ import annotations

import re
from functools import lru_cache

_ENGLISH = """
abroad:udland accident:ulykke account:konto address:adresse adult:voksen allowance:ydelse
apartment:lejlighed application:ansøgning apply:ansøge appointment:aftale asbestos:asbest
assessment:vurdering assistance:hjælp asylum:asyl bank:bank bat:flagermus battery:batteri
benefit:ydelse bicycle:cykel bike:cykel bill:regning bin:affaldsspand birth:fødsel
board:bestyrelse budget:budget building:bygning bulky:storskrald bus:bus business:virksomhed
car:bil care:pleje carer:pårørende cash:kontanthjælp certificate:attest charge:gebyr
child:barn childcare:dagtilbud children:børn citizen:borger citizenship:indfødsret
cleaning:rengøring clerk:sagsbehandler collection:tømning complaint:klage computer:computer
construction:byggeri contract:kontrakt council:kommunalbestyrelse councillor:byrådsmedlem
creche:vuggestue culture:kultur cycle:cykel cycling:cykel daycare:dagtilbud death:dødsfald
debt:gæld demolition:nedrivning dementia:demens dental:tandpleje dentist:tandlæge
deposit:depositum disability:handicap disabled:handicap doctor:læge drainage:kloak
driving:kørsel education:uddannelse elderly:ældre election:valg electricity:el
employee:medarbejder employer:arbejdsgiver employment:beskæftigelse enrol:indskrivning
enrolment:indskrivning environment:miljø event:arrangement eviction:udsættelse
extension:tilbygning family:familie fee:gebyr flat:lejlighed flood:oversvømmelse
food:mad footpath:fortov foster:pleje fraud:svindel funding:tilskud garbage:affald
garden:have glass:glas grant:tilskud gravel:grus green:grøn grit:salt gritting:glatførebekæmpelse
guardian:værge harassment:chikane health:sundhed healthcare:sundhed hearing:høring help:hjælp
helper:hjælper holiday:ferie home:hjem homeless:hjemløs hospital:sygehus house:hus
household:husstand housing:bolig illness:sygdom income:indkomst insurance:forsikring
integration:integration interpreter:tolk invoice:faktura job:job kindergarten:børnehave
landlord:udlejer language:sprog laptop:computer lease:leje leave:orlov library:bibliotek
licence:tilladelse license:tilladelse lighting:belysning loan:lån lorry:lastbil mayor:borgmester
meal:madservice medical:læge medicine:medicin meeting:møde minister:minister move:flytning
moving:flytning municipal:kommunal municipality:kommune museum:museum music:musik
neighbour:nabo neighbor:nabo noise:støj nursery:vuggestue nursing:pleje parent:forælder
park:park parking:parkering passport:pas password:adgangskode path:sti pavement:fortov
payment:betaling payslip:lønseddel pension:pension permission:tilladelse permit:tilladelse
pest:skadedyr phishing:phishing planning:planlægning plan:plan playground:legeplads
police:politi pollution:forurening pothole:hul press:presse property:ejendom
rats:rotte receipt:kvittering recruitment:rekruttering recycling:genbrug refund:tilbagebetaling
refugee:flygtning registration:registrering reimbursement:refusion reminder:rykker
removal:fjernelse renovation:renovering rent:husleje repair:reparation resident:beboer
residence:opholdstilladelse road:vej roof:tag rubbish:affald salary:løn salt:salt
school:skole security:sikkerhed sewage:spildevand sewer:kloak shelter:herberg sick:syg
sickness:sygdom sign:skilt signage:skilt skip:container snow:sne social:social
special:særlig sport:idræt sports:idræt staff:personale street:gade streetlight:gadelys
student:elev summerhouse:sommerhus support:støtte tax:skat teacher:lærer traffic:trafik
transport:transport tree:træ unemployed:ledig unemployment:ledighed vacancy:stilling
vehicle:køretøj visa:visum volunteer:frivillig wage:løn waste:affald water:vand
welfare:velfærd wheelchair:kørestol winter:vinter work:arbejde worker:medarbejder
youth:ung zoning:lokalplan
"""

_GERMAN = """
abfall:affald abwasser:spildevand amt:kommune anbau:tilbygning anmeldung:indskrivning
antrag:ansøgning arbeit:arbejde arbeitslos:ledig arzt:læge ausländer:udlænding
baugenehmigung:byggetilladelse bauen:byggeri behinderung:handicap bibliothek:bibliotek
bürger:borger bürgermeister:borgmester einkommen:indkomst eltern:forældre ferienhaus:sommerhus
fahrrad:cykel familie:familie gebühr:gebyr gemeinde:kommune genehmigung:tilladelse
gesundheit:sundhed grundsteuer:ejendomsskat haus:hus hilfe:hjælp kinder:børn
kindergarten:børnehave kindergartenplatz:børnehave kita:dagtilbud krankheit:sygdom kosten:pris
lärm:støj lehrer:lærer miete:husleje müll:affald nachbar:nabo parken:parkering
parkplatz:parkering pflege:pleje rechnung:faktura schule:skole sozial:social
spielplatz:legeplads steuer:skat straße:vej strasse:vej umzug:flytning unterstützung:støtte
wasser:vand wohnung:bolig zahlung:betaling zahlungserinnerung:rykker
"""

_POLISH = """
śmieci:affald śmietni:affaldsspand odpad:affald segregac:sortering recykling:genbrug
pojemni:affaldsspand wywóz:tømning wywozu:tømning gabaryt:storskrald szkło:glas szkła:glas
papier:papir bateri:batteri pszok:genbrugsplads droga:vej drogi:vej drogę:vej drogą:vej drodze:vej
dróg:vej drogow:vej ulic:gade chodnik:fortov jezdni:vej dziur:hul latarni:gadelys
oświetleni:belysning parking:parkering parkowan:parkering śnieg:sne odśnieżan:snerydning
gołoled:glatføre przystan:stoppested autobus:bus rower:cykel ścieżk:sti znak:skilt
pozwoleni:tilladelse budow:byggeri budyn:bygning rozbiórk:nedrivning rozbudow:tilbygning dach:tag
azbest:asbest działk:grund nieruchomoś:ejendom zagospodarowan:lokalplan architekt:arkitekt
podat:skatte opłat:gebyr,betaling faktur:faktura rachun:regning płatnoś:betaling zapłat:betaling
przypomnieni:rykke upomnieni:rykke zaległoś:restance dług:gæld zadłużeni:gæld windykac:inkasso
przelew:overførsel zwrot:tilbagebetaling grzywn:bøde praca:arbejde pracy:arbejde pracę:arbejde
pracą:arbejde pracown:medarbejder pracodawc:arbejdsgiver zatrudnieni:beskæftigelse
bezrobo:ledighed,dagpenge zasił:ydelse chorobow:sygedagpenge chorob:sygdom zwolnieni:sygemelding
podani:ansøgning wniosek:ansøgning wnios:ansøgning aplikac:ansøgning ofert:tilbud wakat:stilling
stanowisk:stilling rekrutac:rekruttering rozmow:samtale umowa:kontrakt umowy:kontrakt
wynagrodzeni:løn pensj:løn emeryt:pension renty:førtidspension rentę:førtidspension
rencist:førtidspension pomoc:hjælp społeczn:social socjaln:social świadczeni:ydelse zapomog:ydelse
gotówk:kontanthjælp mieszkani:bolig,lejlighed mieszkaniec:beboer mieszkańc:beboer czynsz:husleje
mieszkaniow:boligstøtte lokator:leje wynajem:leje wynajm:leje najmu:leje właściciel:eje
eksmisj:udsættelse bezdomn:hjemløs schronisk:herberg przeprowadz:flytning
zameldowani:flytning,folkeregister wymeldowani:flytning adres:adresse szkoł:skole szkół:skole
szkol:skole uczeń:elev uczni:elev nauczyciel:lære klasa:klasse klasy:klasse lekcj:undervisning
nauczani:undervisning zapis:indskrivning przedszkol:børnehave żłob:vuggestue opiek:pleje,omsorg
dzieck:barn dzieci:barn dziećmi:barn rodzic:forældre rodzin:familie młodzież:ung
niepełnospraw:handicappe inwalid:handicappe wózek:kørestol wózk:kørestol starsz:ældre
opiekunk:hjemmehjælp pielęgniar:sygeplejerske hospicj:hospice zdrowi:sundhed lekarz:læge
lekarsk:læge szpital:sygehus dentyst:tandlæge stomatolog:tandlæge zęby:tand zębów:tand
uzależnieni:misbrug alkoholi:alkohol narkoty:misbrug leki:medicin lekarstw:medicin
psycholog:psykolog psychiatr:psykiatri rehabilitac:genoptræning fizjoterap:fysioterapi
ciąż:graviditet szczepi:vaccination język:sprog ojczyst:modersmål tłumacz:tolk
tłumaczeni:oversættelse paszport:passe dowód:legitimation dowodu:legitimation osobist:legitimation
jazdy:kørekort obywatelstw:indfødsret obywatel:borger pobyt:opholdstilladelse wiza:visum wizy:visum
urodz:fødsel ślub:vielse małżeńst:ægteskab rozwód:skilsmisse rozwod:skilsmisse zgon:dødsfald
śmierć:dødsfald śmierci:dødsfald pogrzeb:begravelse biblioteka:bibliotek biblioteki:bibliotek
bibliotece:bibliotek bibliotekę:bibliotek kulturaln:kultur kultury:kultur kulturze:kultur
sportow:idræt sportu:idræt muzyk:musik muzycz:musikskole,musik pływal:svømmehal boisk:idræt
muzeum:museum teatr:teater wydarzeni:arrangement imprez:arrangement stowarzyszeni:forening
wolontariu:frivillig dotacj:tilskud dofinansowani:tilskud środowisk:miljø hałas:støj
zanieczyszcz:forurening szczur:rotte myszy:mus szkodnik:skadedyr drzew:træ wycink:fældning
zabaw:legeplads woda:vand wody:vand wodę:vand wodą:vand wodzie:vand wodociąg:vandforsyning
kanalizac:kloak ściek:spildevand powódź:oversvømmelse powodzi:oversvømmelse zalan:oversvømmelse
ogrzewani:varme ciepł:varme prąd:el burmistrz:borgmester prezydent:borgmester wójt:borgmester
radn:byrådsmedlem radzie:byråd gmin:kommune urzędnik:sagsbehandle urzęd:kommune urząd:kommune
wybor:valg głosowan:afstemning komputer:computer hasł:adgangskode logowan:adgangskode
drukark:printe internetow:hjemmeside skarg:klage reklamac:klage odwołani:klage zażaleni:klage
zgłoszeni:anmeldelse decyzj:afgørelse sprawa:sag sprawy:sag sprawie:sag sprawę:sag wizyt:aftale
spotkani:møde formularz:blanke zaświadczeni:attest pełnomocnict:fuldmagt informacj:information
pytani:spørgsmål prośb:anmodning policj:politi pożar:brand cmentarz:kirkegård pies:hund psów:hund
zwierz:dy bilet:billet przewóz:kørsel dowóz:kørsel dojazd:kørsel sprzątani:rengøring
posiłk:madservice jedzeni:mad integracj:integration cudzoziem:udlænding uchodźc:flygtning azyl:asyl
alimenty:børnebidrag sprzęt:hjælpemiddel ubezpieczeni:forsikring kredyt:lån pożyczk:lån
dochód:indkomst dochod:indkomst zarobk:løn wypłat:udbetaling urlop:ferie,orlov
macierzyńsk:barselsorlov rodzicielsk:barselsorlov terapia:behandling terapii:behandling
terapię:behandling basenu:svømmehal basenie:svømmehal
"""

_UKRAINIAN = """
смітт:affald сміттє:affald відход:affald сортуван:sortering переробк:genbrug переробл:genbrug
вторинн:genbrug контейнер:container баки:affaldsspand вивез:tømning вивіз:tømning скло:glas
склян:glas папір:papir папер:papir пластик:plast батаре:batteri великогабарит:storskrald
меблі:møbel дорожн:vej вулиц:gade тротуар:fortov вибоїн:hul ліхтар:gadelys освітлен:belysning
паркуван:parkering парковк:parkering стоянк:parkering сніг:sne ожеледиц:glatføre руху:trafik
автобус:bus зупинк:stoppested велосипед:cykel знак:skilt дозвіл:tilladelse дозвол:tilladelse
будівництв:byggeri будівельн:byggeri будівл:bygning будинк:hus будинок:hus знесенн:nedrivning
прибудов:tilbygning даху:tag азбест:asbest ділянк:grund нерухом:ejendom архітект:arkitekt
податк:skatte податок:skatte податков:skatte плата:betaling платіж:betaling платеж:betaling
оплат:betaling рахун:regning фактур:faktura нагадуван:rykke борг:gæld заборгован:gæld штраф:bøde
повернен:tilbagebetaling робот:arbejde прац:arbejde працівник:medarbejder роботодав:arbejdsgiver
вакансі:stilling посад:stilling заяв:ansøgning заявк:ansøgning безробітт:ledighed,dagpenge
безробітн:ledig працевлаштуван:beskæftigelse зайнятост:beskæftigelse допомог:hjælp,ydelse
соціальн:social виплат:udbetaling зарплат:løn заробітн:løn лікарнян:sygedagpenge хвороб:sygdom
хвор:syg пенсі:pension пенсіонер:pensionist інвалід:handicappe житл:bolig житлов:bolig
субсиді:tilskud,boligstøtte квартир:lejlighed оренд:leje,husleje виселенн:udsættelse
безпритульн:hjemløs переїзд:flytning переїха:flytning реєстрац:registrering прописк:folkeregister
адрес:adresse школ:skole шкільн:skole учні:elev учнів:elev учень:elev вчител:lære учител:lære
клас:klasse навчанн:undervisning освіт:uddannelse зарахуван:indskrivning запис:indskrivning
садок:børnehave садк:børnehave садоч:børnehave дитсад:børnehave ясла:vuggestue ясел:vuggestue
яслі:vuggestue дитин:barn дитяч:barn дітей:barn діти:barn дітьми:barn батьк:forældre сімейн:familie
родин:familie молод:ung догляд:pleje,omsorg опікун:værge похил:ældre престарі:plejehjem
доглядальн:hjemmehjælp медсестр:sygeplejerske здоров:sundhed лікар:læge лікарн:sygehus
стоматолог:tandlæge зубн:tand зуби:tand зубів:tand лікуван:behandling ліки:medicin ліків:medicin
залежніст:misbrug залежност:misbrug алкогол:alkohol наркоти:misbrug наркоман:misbrug
психолог:psykolog психіатр:psykiatri реабілітац:genoptræning вагітн:graviditet щеплен:vaccination
вакцин:vaccination мова:sprog мови:sprog мову:sprog мовою:sprog рідн:modersmål перекладач:tolk
переклад:oversættelse паспорт:passe посвідченн:legitimation посвідк:opholdstilladelse
проживанн:ophold водійськ:kørekort громадянств:indfødsret громадян:borger віза:visum візу:visum
народжен:fødsel шлюб:ægteskab розлучен:skilsmisse смерт:dødsfald похорон:begravelse
біженц:flygtning біженец:flygtning притулок:asyl іноземц:udlænding інтеграц:integration
бібліотек:bibliotek культур:kultur спорт:idræt музик:musik музичн:musikskole,musik басейн:svømmehal
приміщен:lokale музей:museum театр:teater волонтер:frivillig грант:tilskud фінансуван:tilskud
стадіон:stadion довкілл:miljø екологі:miljø навколишн:miljø шуму:støj шумом:støj шумн:støj
забрудн:forurening щури:rotte щурів:rotte щура:rotte миші:mus шкідник:skadedyr дерев:træ вода:vand
води:vand воду:vand водою:vand водопостач:vandforsyning водопровід:vandforsyning каналізац:kloak
стічн:spildevand повін:oversvømmelse затоплен:oversvømmelse опаленн:varme електр:el мера:borgmester
меру:borgmester мером:borgmester раду:byråd радою:byråd депутат:byrådsmedlem громад:kommune
муніципал:kommunal вибор:valg ютер:computer компютер:computer пароль:adgangskode паролю:adgangskode
сайт:hjemmeside скарг:klage оскарж:klage звернен:henvendelse рішенн:afgørelse справа:sag справи:sag
справу:sag зустріч:møde прийом:aftale довідк:attest документ:dokument інформаці:information
питанн:spørgsmål прохан:anmodning поліці:politi пожеж:brand кладовищ:kirkegård собак:hund тварин:dy
транспорт:transport квиток:billet харчуван:mad прибиран:rengøring страхуван:forsikring кредит:lån
позик:lån дохід:indkomst доход:indkomst відпустк:ferie,orlov декрет:barselsorlov пільг:ydelse
аліменти:børnebidrag дорога:vej дороги:vej дорогу:vej дорогою:vej дорозі:vej доріг:vej
міськрад:byråd
"""

_ARABIC = """
نفاي:affald قمام:affald زبال:affald مخلفات:affald فرز:sortering تدوير:genbrug حاوي:container
زجاج:glas ورق:papir بلاستيك:plast بطاري:batteri اثاث:møbel طريق:vej طرق:vej شارع:gade شوارع:gade
رصيف:fortov ارصف:fortov حفر:hul انار:belysning اضاء:belysning مصابيح:gadelys مصباح:gadelys
موقف:parkering مواقف:parkering ثلج:sne ثلوج:sne جليد:glatføre مرور:trafik حافل:bus باص:bus
دراج:cykel جسر:bro ترخيص:tilladelse تراخيص:tilladelse تصريح:tilladelse رخص:tilladelse مبنى:bygning
مباني:bygning تشييد:byggeri هدم:nedrivning سقف:tag اسبست:asbest عقار:ejendom ارض:grund مخطط:plan
تخطيط:planlægning ضريب:skatte ضرائب:skatte رسوم:gebyr فاتور:faktura فواتير:faktura دفع:betaling
سداد:betaling مدفوع:betaling تذكير:rykke ديون:gæld مديون:gæld غرام:bøde مخالف:bøde
استرداد:tilbagebetaling حساب:konto عمل:arbejde وظيف:stilling,job وظائف:stilling,job شاغر:stilling
توظيف:beskæftigelse عامل:medarbejder موظف:medarbejder طلب:ansøgning تقديم:ansøgning
بطال:ledighed,dagpenge عاطل:ledig اعان:ydelse مساعد:hjælp اجتماع:møde اجتماعي:social
نقدي:kontanthjælp مرض:sygdom مرضي:sygemelding مريض:syg اجاز:ferie,orlov تقاعد:pension
متقاعد:pensionist معاش:pension راتب:løn رواتب:løn اجر:løn سكن:bolig مسكن:bolig سكني:bolig
اسكان:bolig شق:lejlighed ايجار:husleje مستاجر:leje مالك:udleje اخلاء:udsættelse مشرد:hjemløs
انتقال:flytning عنوان:adresse تسجيل:registrering,indskrivning مدرس:skole مدارس:skole معلم:lære
طالب:elev طلاب:elev تلاميذ:elev تلميذ:elev صف:klasse تعليم:undervisning دراس:uddannelse
رياض:børnehave روض:børnehave حضان:vuggestue اطفال:barn طفل:barn اولاد:barn والد:forældre
ابوين:forældre اسر:familie عائل:familie شباب:ung رعاي:pleje,omsorg اعاق:handicappe معاق:handicappe
كرسي:kørestol مسن:ældre منزلي:hjemmehjælp منزل:hjem تمريض:pleje ممرض:sygeplejerske صح:sundhed
صحي:sundhed طبيب:læge اطباء:læge مستشف:sygehus اسنان:tandlæge,tand علاج:behandling دواء:medicin
ادوي:medicin ادمان:misbrug مخدر:misbrug كحول:alkohol نفسي:psykiatri تطعيم:vaccination
لقاح:vaccination لغ:sprog لغات:sprog مترجم:tolk ترجم:oversættelse جواز:passe هوي:legitimation
قياد:kørekort جنسي:indfødsret مواطن:borger اقام:opholdstilladelse تاشير:visum فيز:visum ولاد:fødsel
ميلاد:fødsel زواج:ægteskab طلاق:skilsmisse وفا:dødsfald جناز:begravelse لاجئ:flygtning لجوء:asyl
اجانب:udlænding اجنبي:udlænding اندماج:integration مكتبة:bibliotek مكتبات:bibliotek ثقاف:kultur
رياضة:idræt رياضي:idræt موسيق:musik مسبح:svømmehal قاعة:hal,lokale متحف:museum مسرح:teater
فعالي:arrangement نشاط:aktivitet نادي:forening متطوع:frivillig تطوع:frivillig دعم:støtte
منح:tilskud بيئ:miljø ضوضاء:støj ضجيج:støj ازعاج:støj تلوث:forurening فئران:rotte,mus جرذ:rotte
جرذان:rotte حشرات:skadedyr اشجار:træ شجر:træ مياه:vand ماء:vand مجار:kloak فيضان:oversvømmelse
تدفئ:varme كهرباء:el كهرب:el بلدي:kommune عمدة:borgmester مجلس:byråd انتخاب:valg كمبيوتر:computer
حاسوب:computer حاسب:computer باسورد:adgangskode شكو:klage شكاو:klage تظلم:klage اعتراض:klage
استئناف:klage قرار:afgørelse قضي:sag موعد:aftale شهاد:attest وثيق:dokument وثائق:dokument
استمار:blanke نموذج:blanke معلومات:information سؤال:spørgsmål استفسار:spørgsmål شرطة:politi
حريق:brand مقبر:kirkegård كلب:hund كلاب:hund حيوان:dy مواصلات:transport تذكر:billet
وجبات:madservice وجبة:madservice طعام:mad تنظيف:rengøring تامين:forsikring قرض:lån
"""


def _table(text: str) -> dict[str, tuple[str, ...]]:
    table: dict[str, tuple[str, ...]] = {}
    for pair in text.split():
        word, _, danish = pair.partition(":")
        table[word] = (*table.get(word, ()), *danish.split(","))
    return table


DANISH: dict[str, tuple[str, ...]] = {**_table(_ENGLISH), **_table(_GERMAN)}
_PLURAL = re.compile(r"(?:ies|es|s|en|n|e)$")

# Arabic spelled with or without hamza on alif, with alif maqsura for ya, with tatweel.
_ARABIC_LETTERS = str.maketrans({"أ": "ا", "إ": "ا", "آ": "ا", "ى": "ي", "ـ": None})
# Polish typed without diacritics; not where that spells a Danish word ("drog", "rente").
_FOLD = str.maketrans("ąćęłńóśźż", "acelnoszz")
_NO_FOLD = frozenset({"drogę", "dróg", "rentę", "ślub", "hasł", "bibliotekę"})
_POLISH_TABLE = _table(_POLISH)
STEMS: dict[str, tuple[str, ...]] = {
    **{k.translate(_FOLD): v for k, v in _POLISH_TABLE.items() if k not in _NO_FOLD},
    **_POLISH_TABLE, **_table(_UKRAINIAN),
    **{k.translate(_ARABIC_LETTERS): v for k, v in _table(_ARABIC).items()},
}
_SHORTEST = 4  # a stem shorter than this must be the whole word
_LONGEST = max(map(len, STEMS))
# Arabic clitics, longest first: "and with the", "and the", "with the", "so the", "like the",
# "and for the", "for the", "the", "and", "so", "with", "for", "like".
_CLITICS = ("وبال", "وال", "بال", "فال", "كال", "ولل", "لل", "ال", "و", "ف", "ب", "ل", "ك")
_ENDINGS = ("ات", "ين", "ون", "ها", "هم", "ة", "ه")


def _stem(word: str) -> tuple[str, ...] | None:
    """The Danish words of `word` itself or of the longest stem it starts with, or None."""
    hit = STEMS.get(word)
    for n in range(min(len(word) - 1, _LONGEST), _SHORTEST - 1, -1):
        if hit is not None:
            break
        hit = STEMS.get(word[:n])
    return hit


def _arabic(word: str) -> tuple[str, ...] | None:
    # The word without its clitics first: with them, "والدعم" (and the support) would start
    # with the stem of "والد" (parent).
    bare = [word[len(c):] for c in _CLITICS if word.startswith(c) and len(word) - len(c) >= 2]
    for form in (*bare, word):
        hit = _stem(form) or next((STEMS[form[:-len(e)]] for e in _ENDINGS
                                   if form.endswith(e) and form[:-len(e)] in STEMS), None)
        if hit:
            return hit
    return None


@lru_cache(maxsize=100_000)
def danish(word: str) -> tuple[str, ...]:
    """The Danish words for a lower-cased English, German, Polish, Ukrainian or Arabic word,
    or ()."""
    hit = DANISH.get(word)
    if hit is None and len(word) > 4:
        stem = _PLURAL.sub("", word)
        hit = DANISH.get(stem) or DANISH.get(stem + "y")
    if hit is None:
        if "\u0600" <= word[:1] <= "\u06ff":
            hit = _arabic(word.translate(_ARABIC_LETTERS))
        else:
            hit = _stem(word)
    return hit or ()
