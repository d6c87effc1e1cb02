# ruff: noqa: E501  (an HTML page with its script: long lines are the page's)
"""The web page `gmtrace serve` shows at `/`: drop images, read the answers.

One HTML document with its style and script inline (nothing fetched from
elsewhere). Dropped or chosen files go to `POST /v1/analyze?views=1`; each answer
is shown as a card: the verdict and p(generated), the source GM or "unknown GM",
the fingerprint and spectrum, and for an image called generated or unsure (marked
"if generated") the parsed hyperparameters and loss types with confidence bars,
"unknown" where the model's parsing abstains. The status line counts every image
dropped on the page, by verdict. Errors (a file that is not an image, a refused upload) are shown
on the card or above the cards, in words.
"""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>gmtrace</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
#drop{border:3px dashed #888;border-radius:8px;padding:2.5em;text-align:center;font-size:1.2em}
#drop.over{background:#eef}
.card{border:1px solid #ccc;border-radius:6px;padding:1em;margin:1em 0;display:flex;gap:1.5em}
.card.error{border-color:#c33;background:#fee}
.verdict{font-size:1.4em;font-weight:bold}.generated{color:#b30}.unsure{color:#a70}.real{color:#070}
table{border-collapse:collapse}td{border:1px solid #ddd;padding:1px 6px;font-size:13px}
.bar{display:inline-block;width:70px;height:8px;background:#ddd;vertical-align:middle}
.bar span{display:block;height:8px;background:#3a7}
figure{margin:0 0 .5em 0}figcaption{font-size:12px;color:#555}
#status{min-height:1.5em;color:#555}
</style></head><body>
<h1>gmtrace</h1>
<p>Is an image generated, by which generative model, and what were that model's
architecture and training losses? Drop images below (they are sent to this server only).</p>
<p id="tokenrow" style="display:none">Token: <input id="token" type="password"></p>
<div id="drop">Drop images here, or <input id="pick" type="file" multiple accept="image/*"></div>
<p id="status"></p>
<div id="cards"></div>
<script>
const needToken = __TOKEN_NEEDED__;
if (needToken) document.getElementById('tokenrow').style.display = '';
const drop = document.getElementById('drop'), cards = document.getElementById('cards');
const status = document.getElementById('status');
function esc(s){return String(s).replace(/[&<>"']/g,c=>({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;',"'":'&#39;'}[c]));}
function bar(p){return p==null?'':'<span class="bar"><span style="width:'+Math.round(100*p)+'%"></span></span> '+p.toFixed(2);}
function card(r){
  const d=document.createElement('div');
  d.className='card'+(r.ok?'':' error');
  d.dataset.file=r.path;
  if(!r.ok){d.innerHTML='<div><b>'+esc(r.path)+'</b><p class="err">'+esc(r.error)+'</p></div>';return d;}
  const gen=r.verdict!=='real', top=(r.top_gms||[])[0]||{};
  const src=!gen?'':(r.unknown_gm?'unknown GM (not one the model knows)':'nearest known GM: '+esc(top.name)+' ('+top.probability.toFixed(2)+')');
  let hp='', ls='';
  const h=gen?(r.hyperparameters||{}):{}, lp=gen?(r.loss_probabilities||{}):{}, unk=r.parse_unknown||[];
  for(const k of Object.keys(h)){ if(k.endsWith('_confidence')) continue;
    const v=h[k], c=h[k+'_confidence'];
    hp+='<tr><td>'+esc(k)+'</td><td>'+esc(typeof v==='number'?(Math.abs(v)>=1000?v.toExponential(2):v.toFixed(1)):v)+'</td><td>'+(c==null||v==='unknown'?'':bar(c))+'</td></tr>';}
  for(const k of Object.keys(lp).sort((a,b)=>lp[b]-lp[a]))
    ls+='<tr><td>loss '+esc(k)+'</td><td>'+(unk.includes('loss '+k)?'unknown':bar(lp[k]))+'</td></tr>';
  const cap=r.verdict==='unsure'?'<caption>if generated</caption>':'';
  const v=r.views||{};
  d.innerHTML='<div><b>'+esc(r.path)+'</b><p class="verdict '+r.verdict+'">'+r.verdict+
    ' (p = '+r.p_generated.toFixed(3)+')</p>'+(r.unsure_reason?'<p>unsure: '+esc(r.unsure_reason)+'</p>':'')+
    '<p>'+(r.verdict==='unsure'&&src?'if generated: ':'')+src+'</p>'+seenLine(r.seen_before)+
    (v.fingerprint?'<figure><img src="'+v.fingerprint+'" alt="fingerprint"><figcaption>fingerprint</figcaption></figure>':'')+
    (v.spectrum?'<figure><img src="'+v.spectrum+'" alt="spectrum"><figcaption>spectrum of the residual</figcaption></figure>':'')+
    '</div><div>'+(hp?'<table>'+cap+hp+'</table>':'')+'</div><div>'+(ls?'<table>'+cap+ls+'</table>':'')+'</div>';
  return d;
}
function seenLine(sb){  // a server with a fingerprint index: where it was seen before
  if(!sb) return '';
  if(sb.reposted.length) return '<p>re-posted: this file was seen in case '+esc(sb.reposted[0].case)+'</p>';
  const n=sb.nearest[0];
  if(!n) return '<p>not seen before (the index is empty)</p>';
  return '<p>nearest seen before: case '+esc(n.case)+' (distance '+n.distance.toFixed(3)+
    (n.same_source==null?'':', same source '+Math.round(100*n.same_source)+' %')+', '+esc(n.date)+')</p>';
}
const seen={generated:0,unsure:0,real:0,failed:0};  // every image dropped on this page
async function send(files){
  if(!files.length) return;
  const fd=new FormData();
  for(const f of files) fd.append('files', f, f.name);
  status.textContent='analyzing '+files.length+' image(s)...';
  const headers={};
  const t=document.getElementById('token').value;
  if(t) headers['Authorization']='Bearer '+t;
  try{
    const resp=await fetch('/v1/analyze?views=1',{method:'POST',body:fd,headers});
    const body=await resp.json();
    if(!resp.ok){status.textContent='refused: '+(body.error||resp.status);return;}
    for(const r of body.results){cards.prepend(card(r));seen[r.ok?r.verdict:'failed']+=1;}
    const all=Object.values(seen).reduce((a,b)=>a+b,0);
    status.textContent='done: '+all+' image(s) dropped: '+seen.generated+' generated, '+
      seen.unsure+' unsure, '+seen.real+' real, '+seen.failed+' failed; model '+body.model_id;
  }catch(e){status.textContent='failed: '+e;}
}
drop.addEventListener('dragover',e=>{e.preventDefault();drop.classList.add('over');});
drop.addEventListener('dragleave',()=>drop.classList.remove('over'));
drop.addEventListener('drop',e=>{e.preventDefault();drop.classList.remove('over');send(e.dataTransfer.files);});
document.getElementById('pick').addEventListener('change',e=>send(e.target.files));
</script></body></html>
"""
